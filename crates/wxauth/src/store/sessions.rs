//! Sessions and their refresh tokens (stored only as SHA-256 hashes).
//! Writes go through the group-commit writer; reads go to the pool.

use crate::vocab::RevokeReason;
use futures_util::future::BoxFuture;
use sqlx::Row;

use super::Store;
use super::exec::{Fields, query};
use super::user_cache::UserCache;
use super::writer::{Tx, Write};
use crate::error::Result;

/// A session row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id (in access tokens).
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Which app.
    pub appid: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when revoked.
    pub revoked_at: Option<i64>,
}

impl SessionRecord {
    fn from_row(row: &impl Fields) -> Result<Self> {
        Ok(Self {
            id: row.field("id")?,
            user_id: row.field("user_id")?,
            appid: row.field("appid")?,
            created_at: row.field("created_at")?,
            revoked_at: row.field("revoked_at")?,
        })
    }
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Exchanged: the old token is spent, the new one stored.
    Rotated {
        /// The session.
        session_id: String,
        /// Its user.
        user_id: String,
        /// Its app.
        appid: String,
    },
    /// The token had already been used: the session is now revoked.
    Reused {
        /// The revoked session.
        session_id: String,
    },
    /// Unknown, expired, or its session is revoked.
    Invalid,
}

pub(super) async fn insert_session(
    tx: &mut Tx<'_>,
    session_id: &str,
    user_id: &str,
    appid: &str,
    refresh_hash: &[u8],
    refresh_expires_at: i64,
    now: i64,
) -> Result<()> {
    query("INSERT INTO sessions (id, user_id, appid, created_at) VALUES ($1, $2, $3, $4)")
        .bind(session_id)
        .bind(user_id)
        .bind(appid)
        .bind(now)
        .execute(tx)
        .await?;
    query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(refresh_hash.to_vec())
        .bind(session_id)
        .bind(now)
        .bind(refresh_expires_at)
        .execute(tx)
        .await?;
    Ok(())
}

/// Another session for an existing user (a repeated login code).
pub struct NewSession {
    /// Whose.
    pub user_id: String,
    /// Which app.
    pub appid: String,
    /// The new session's id.
    pub session_id: String,
    /// SHA-256 of its first refresh token.
    pub refresh_hash: Vec<u8>,
    /// When that token expires, Unix milliseconds.
    pub refresh_expires_at: i64,
    /// Unix milliseconds.
    pub now: i64,
}

impl Write for NewSession {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            query("UPDATE users SET last_login_at = $1 WHERE id = $2")
                .bind(self.now)
                .bind(&self.user_id)
                .execute(tx)
                .await?;
            insert_session(
                tx,
                &self.session_id,
                &self.user_id,
                &self.appid,
                &self.refresh_hash,
                self.refresh_expires_at,
                self.now,
            )
            .await
        })
    }
    fn committed(&self, _: &(), users: &UserCache) {
        users.forget(&self.user_id);
    }
}

/// Refresh-token rotation. The conditional UPDATE makes "spend this token"
/// atomic even with several instances on one PostgreSQL: of two requests
/// with the same token exactly one sees it unused.
struct RotateRefresh {
    old_hash: Vec<u8>,
    new_hash: Vec<u8>,
    new_expires_at: i64,
    now: i64,
}

impl Write for RotateRefresh {
    type Output = RefreshOutcome;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<RefreshOutcome>> {
        Box::pin(async move {
            let spent = query(
                "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING session_id",
            )
            .bind(self.now)
            .bind(self.old_hash.clone())
            .fetch_optional(tx)
            .await?;
            let Some(spent) = spent else {
                let known = query("SELECT session_id, used_at FROM refresh_tokens WHERE hash = $1")
                    .bind(self.old_hash.clone())
                    .fetch_optional(tx)
                    .await?;
                let Some(known) = known else {
                    return Ok(RefreshOutcome::Invalid);
                };
                let used_at: Option<i64> = known.try_get("used_at")?;
                if used_at.is_none() {
                    return Ok(RefreshOutcome::Invalid); // expired, never used
                }
                let session_id: String = known.try_get("session_id")?;
                query(
                    "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(self.now)
                .bind(RevokeReason::RefreshTokenReuse.as_str())
                .bind(&session_id)
                .execute(tx)
                .await?;
                return Ok(RefreshOutcome::Reused { session_id });
            };
            let session_id: String = spent.try_get("session_id")?;
            let session = query("SELECT user_id, appid, revoked_at FROM sessions WHERE id = $1")
                .bind(&session_id)
                .fetch_one(tx)
                .await?;
            let revoked_at: Option<i64> = session.try_get("revoked_at")?;
            if revoked_at.is_some() {
                return Ok(RefreshOutcome::Invalid);
            }
            query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(self.new_hash.clone())
                .bind(&session_id)
                .bind(self.now)
                .bind(self.new_expires_at)
                .execute(tx)
                .await?;
            Ok(RefreshOutcome::Rotated {
                session_id,
                user_id: session.try_get("user_id")?,
                appid: session.try_get("appid")?,
            })
        })
    }
}

/// One entry of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRevocation {
    /// The database's number for it: increasing, with gaps.
    pub seq: i64,
    /// The session.
    pub session_id: String,
    /// When, by the clock of the instance that revoked it.
    pub revoked_at: i64,
}

struct RevokeSession {
    session_id: String,
    reason: RevokeReason,
    now: i64,
}

impl Write for RevokeSession {
    type Output = bool;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(self.now)
            .bind(self.reason.as_str())
            .bind(&self.session_id)
            .execute(tx)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}

impl Store {
    /// Opens another session for an existing user (a repeated login code).
    pub async fn new_session(&self, session: NewSession) -> Result<()> {
        self.writer.submit(session).await
    }

    /// Exchanges a refresh token (by hash) for a new one. A token that was
    /// already used revokes its whole session.
    pub async fn rotate_refresh(
        &self,
        old_hash: Vec<u8>,
        new_hash: Vec<u8>,
        new_expires_at: i64,
        now: i64,
    ) -> Result<RefreshOutcome> {
        self.writer
            .submit(RotateRefresh {
                old_hash,
                new_hash,
                new_expires_at,
                now,
            })
            .await
    }

    /// Whether a refresh token with this hash was ever issued (used or
    /// not): a read, so a made-up token never reaches the writer.
    pub async fn refresh_token_exists(&self, hash: &[u8]) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM refresh_tokens WHERE hash = $1")
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Revokes a session; false if it was already revoked or does not exist.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        reason: RevokeReason,
        now: i64,
    ) -> Result<bool> {
        self.writer
            .submit(RevokeSession {
                session_id: session_id.to_owned(),
                reason,
                now,
            })
            .await
    }

    /// A session by id.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id, user_id, appid, created_at, revoked_at FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(SessionRecord::from_row).transpose()
    }

    /// Which of `ids` are live sessions (exist, not revoked): one query per
    /// [`super::IDS_PER_LOOKUP`] ids (the open sockets' sessions, checked
    /// in the database while revocations may not arrive through Redis).
    pub async fn live_sessions(&self, ids: &[String]) -> Result<std::collections::HashSet<String>> {
        let rows = self
            .rows_in(
                "SELECT id FROM sessions WHERE revoked_at IS NULL AND id IN ({in})",
                &[],
                ids,
            )
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Revocations the database numbered after `after`, in order, at most
    /// `limit` (see `auth::revocation_sync`).
    pub async fn revocations_after(&self, after: i64, limit: i64) -> Result<Vec<LoggedRevocation>> {
        let rows = sqlx::query(
            "SELECT seq, session_id, revoked_at FROM revocation_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(LoggedRevocation {
                    seq: r.try_get("seq")?,
                    session_id: r.try_get("session_id")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Forgets logged revocations older than `before` (their tokens have
    /// long expired).
    pub async fn prune_revocation_log(&self, before: i64) -> Result<u64> {
        self.writer
            .submit(super::writer::DeleteBefore {
                sql: "DELETE FROM revocation_log WHERE revoked_at < $1",
                before,
            })
            .await
    }

    /// Sessions revoked (or deleted with their user) at or after `since`
    /// (to rebuild the revocation cache at start-up): (session id, revoked_at).
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>> {
        // Deleted users' sessions are tombstones (see `accounts`).
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at >= $1 \
             UNION ALL SELECT session_id AS id, revoked_at FROM session_tombstones WHERE revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("revoked_at")?)))
            .collect()
    }
}
