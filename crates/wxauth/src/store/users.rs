//! Users: one row per (appid, openid), with the sealed session_key and
//! phone, the profile, and login times. Writes go through the group-commit
//! writer; each is a [`Write`] with its own typed output.

use futures_util::future::BoxFuture;

use super::Store;
use super::exec::{Query, query};
use super::rows::{USER_COLUMNS, UserRecord};
use super::sessions::insert_session;
use super::user_cache::UserCache;
use super::writer::{Tx, Write, answered_rows};
use crate::error::{Error, Result};

/// Everything one login writes, committed together: the user created or
/// updated (appid, openid), the new session_key stored, and a session
/// opened with its first refresh token.
#[derive(Clone)]
pub struct LoginWrite {
    /// The id to give the user if they are new.
    pub new_user_id: String,
    /// The app.
    pub appid: String,
    /// From jscode2session.
    pub openid: String,
    /// From jscode2session, when present (an absent one keeps the stored one).
    pub unionid: Option<String>,
    /// The new session_key, sealed.
    pub session_key_enc: Vec<u8>,
    /// The new session's id.
    pub session_id: String,
    /// SHA-256 of the first refresh token.
    pub refresh_hash: Vec<u8>,
    /// When that refresh token expires, Unix milliseconds.
    pub refresh_expires_at: i64,
    /// Unix milliseconds.
    pub now: i64,
}

/// What a login wrote: the user as stored now, and whether it was created.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The user row after the login.
    pub user: UserRecord,
    /// Whether this login created it.
    pub new_user: bool,
}

/// What a login changes on a user who exists (an absent unionid keeps the
/// stored one): shared by the one-row and the grouped login.
macro_rules! on_login_conflict {
    () => {
        "ON CONFLICT (appid, openid) DO UPDATE SET \
           unionid = COALESCE(excluded.unionid, users.unionid), \
           session_key_enc = excluded.session_key_enc, \
           last_login_at = excluded.last_login_at"
    };
}

/// The user upsert of a login (`$1`…`$6`).
const UPSERT_USER: &str = concat!(
    "INSERT INTO users (id, appid, openid, unionid, session_key_enc, created_at, last_login_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6) ",
    on_login_conflict!()
);

impl LoginWrite {
    /// Binds `UPSERT_USER`'s `$1`…`$6`.
    fn bind_user<'q>(&self, statement: Query<'q>) -> Query<'q> {
        statement
            .bind(&self.new_user_id)
            .bind(&self.appid)
            .bind(&self.openid)
            .bind(self.unionid.clone())
            .bind(self.session_key_enc.clone())
            .bind(self.now)
    }

    /// PostgreSQL: the user, the session and its refresh token in one
    /// statement (one round trip instead of three; the foreign keys are
    /// checked at the statement's end, when all three rows exist).
    async fn apply_in_one_statement(&self, tx: &mut Tx<'_>) -> Result<LoggedIn> {
        let sql = format!(
            "WITH u AS ({UPSERT_USER} RETURNING {USER_COLUMNS}), \
             s AS (INSERT INTO sessions (id, user_id, appid, created_at) SELECT $7, id, $2, $6 FROM u RETURNING id), \
             r AS (INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) SELECT $8, id, $6, $9 FROM s) \
             SELECT {USER_COLUMNS} FROM u"
        );
        let row = self
            .bind_user(query(&sql))
            .bind(&self.session_id)
            .bind(self.refresh_hash.clone())
            .bind(self.refresh_expires_at)
            .fetch_one(tx)
            .await?;
        let user = UserRecord::from_row(&row)?;
        let new_user = user.id == self.new_user_id;
        Ok(LoggedIn { user, new_user })
    }
}

impl Write for LoginWrite {
    type Output = LoggedIn;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<LoggedIn>> {
        Box::pin(async move {
            if tx.chains_writes() {
                return self.apply_in_one_statement(tx).await;
            }
            let row = self
                .bind_user(query(&format!("{UPSERT_USER} RETURNING {USER_COLUMNS}")))
                .fetch_one(tx)
                .await?;
            let user = UserRecord::from_row(&row)?;
            let new_user = user.id == self.new_user_id;
            insert_session(
                tx,
                &self.session_id,
                &user.id,
                &self.appid,
                &self.refresh_hash,
                self.refresh_expires_at,
                self.now,
            )
            .await?;
            Ok(LoggedIn { user, new_user })
        })
    }
    const TOGETHER: bool = true;
    fn apply_together<'a>(
        writes: &'a [&'a Self],
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Result<Vec<Option<LoggedIn>>>> {
        Box::pin(login_together(tx, writes))
    }
    fn committed(&self, done: &LoggedIn, users: &UserCache) {
        users.put(&done.user);
    }
}

/// One row of `login_together`'s input (bytes as hex).
#[derive(serde::Serialize)]
struct GroupRow<'a> {
    ord: usize,
    new_user_id: &'a str,
    appid: &'a str,
    openid: &'a str,
    unionid: Option<&'a str>,
    session_key_enc: String,
    session_id: &'a str,
    refresh_hash: String,
    refresh_expires_at: i64,
    now: i64,
}

/// PostgreSQL: logins of different users in one statement (the one-row
/// login over a set of rows, which arrive as one JSON parameter). A user
/// at most once: a statement cannot upsert the same row twice. The others
/// are answered None and applied alone.
async fn login_together(tx: &mut Tx<'_>, logins: &[&LoginWrite]) -> Result<Vec<Option<LoggedIn>>> {
    let mut outcomes: Vec<Option<LoggedIn>> = logins.iter().map(|_| None).collect();
    let mut users = std::collections::HashSet::new();
    let rows: Vec<GroupRow> = logins
        .iter()
        .enumerate()
        .filter(|(_, l)| users.insert((l.appid.as_str(), l.openid.as_str())))
        .map(|(ord, l)| GroupRow {
            ord,
            new_user_id: &l.new_user_id,
            appid: &l.appid,
            openid: &l.openid,
            unionid: l.unionid.as_deref(),
            session_key_enc: hex::encode(&l.session_key_enc),
            session_id: &l.session_id,
            refresh_hash: hex::encode(&l.refresh_hash),
            refresh_expires_at: l.refresh_expires_at,
            now: l.now,
        })
        .collect();
    if rows.len() < 2 {
        return Ok(outcomes);
    }
    let input = serde_json::to_string(&rows).map_err(Error::internal)?;
    let found = query(&format!(
        "WITH input AS ( \
           SELECT * FROM json_to_recordset($1::json) AS t(ord bigint, new_user_id text, appid text, \
             openid text, unionid text, session_key_enc text, session_id text, refresh_hash text, \
             refresh_expires_at bigint, now bigint)), \
         u AS ( \
           INSERT INTO users (id, appid, openid, unionid, session_key_enc, created_at, last_login_at) \
           SELECT new_user_id, appid, openid, unionid, decode(session_key_enc, 'hex'), now, now FROM input \
           {ON_CONFLICT} RETURNING {USER_COLUMNS}), \
         s AS ( \
           INSERT INTO sessions (id, user_id, appid, created_at) \
           SELECT i.session_id, u.id, i.appid, i.now FROM input i JOIN u ON u.appid = i.appid AND u.openid = i.openid \
           RETURNING id), \
         r AS ( \
           INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) \
           SELECT decode(i.refresh_hash, 'hex'), s.id, i.now, i.refresh_expires_at FROM input i JOIN s ON s.id = i.session_id) \
         SELECT i.ord, u.* FROM input i JOIN u ON u.appid = i.appid AND u.openid = i.openid",
        ON_CONFLICT = on_login_conflict!()
    ))
    .bind(input)
    .fetch_all(tx)
    .await?;
    for (row, ord, login) in answered_rows(found, rows.len(), logins)? {
        let user = UserRecord::from_row(&row)?;
        let new_user = user.id == login.new_user_id;
        outcomes[ord] = Some(LoggedIn { user, new_user });
    }
    Ok(outcomes)
}

/// A change to a profile, computed from the current one inside the write
/// transaction (so concurrent changes never overwrite each other).
pub type ProfileChange = Box<dyn Fn(&str) -> Result<String> + Send + Sync>;

struct ModifyProfile {
    user_id: String,
    change: ProfileChange,
}

impl Write for ModifyProfile {
    type Output = Option<UserRecord>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Option<UserRecord>>> {
        Box::pin(async move {
            // Read with the row locked (a no-op UPDATE, valid on both
            // databases): another instance's writer changing the same
            // profile waits, so neither merge is lost.
            let row = query(
                "UPDATE users SET profile_version = profile_version WHERE id = $1 RETURNING profile",
            )
            .bind(&self.user_id)
            .fetch_optional(tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let current: String = row.try_get("profile")?;
            let next = (self.change)(&current)?;
            let row = query(&format!(
                "UPDATE users SET profile = $1, profile_version = profile_version + 1 WHERE id = $2 RETURNING {USER_COLUMNS}"
            ))
            .bind(next)
            .bind(&self.user_id)
            .fetch_one(tx)
            .await?;
            Ok(Some(UserRecord::from_row(&row)?))
        })
    }
    fn committed(&self, user: &Option<UserRecord>, users: &UserCache) {
        match user {
            Some(u) => users.put(u),
            None => users.forget(&self.user_id),
        }
    }
}

struct SetPhone {
    user_id: String,
    phone_enc: Vec<u8>,
    phone_lookup: Vec<u8>,
}

impl Write for SetPhone {
    type Output = bool;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = query("UPDATE users SET phone_enc = $1, phone_lookup = $2 WHERE id = $3")
                .bind(self.phone_enc.clone())
                .bind(self.phone_lookup.clone())
                .bind(&self.user_id)
                .execute(tx)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }
    fn committed(&self, _: &bool, users: &UserCache) {
        users.forget(&self.user_id);
    }
}

impl Store {
    /// Creates or updates the user (appid, openid), stores the new
    /// session_key, and opens a session with its first refresh token, in one
    /// commit.
    pub async fn login(&self, write: LoginWrite) -> Result<LoggedIn> {
        self.writer.submit(write).await
    }

    /// Changes the user's profile with `change`, which receives the current
    /// profile inside the write transaction and returns the new one (or an
    /// error, which leaves it unchanged). None if there is no such user.
    pub async fn modify_profile(
        &self,
        user_id: &str,
        change: ProfileChange,
    ) -> Result<Option<UserRecord>> {
        self.writer
            .submit(ModifyProfile {
                user_id: user_id.to_owned(),
                change,
            })
            .await
    }

    /// Stores the user's (encrypted) phone number and its lookup tag;
    /// false if there is no such user.
    pub async fn set_phone(
        &self,
        user_id: &str,
        phone_enc: Vec<u8>,
        phone_lookup: Vec<u8>,
    ) -> Result<bool> {
        self.writer
            .submit(SetPhone {
                user_id: user_id.to_owned(),
                phone_enc,
                phone_lookup,
            })
            .await
    }

    /// A user by id, read from the database whatever the cache holds:
    /// what operators see (another process, the operator's CLI, may have
    /// changed or deleted the row).
    pub async fn user_uncached(&self, id: &str) -> Result<Option<UserRecord>> {
        match &self.user_reads {
            Some(reads) => reads.read(&id.to_owned()).await,
            None => super::grouped_reads::user_alone(&self.pool, id).await,
        }
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        if let Some(user) = self.users.get(id) {
            return Ok(Some(user));
        }
        let ticket = self.users.ticket();
        let user = self.user_uncached(id).await?;
        if let Some(u) = &user {
            self.users.fill(ticket, u);
        }
        Ok(user)
    }
}
