//! What operators do to accounts: find them, see their sessions, end every
//! session, delete everything held about a user, export it, and re-seal
//! encrypted columns under a new key.

use crate::vocab::RevokeReason;
use futures_util::future::BoxFuture;
use sqlx::Row;

use super::Store;
use super::audit::{NewAuditEntry, insert_audit};
use super::changes::{Change, ChangeOp};
use super::exec::query;
use super::rows::{COLUMNS, DocumentRecord, USER_COLUMNS, UserRecord};
use super::user_cache::UserCache;
use super::writer::{Tx, Write};
use crate::error::Result;

/// How an operator looks a user up (always within one app, except
/// `Unionid` with no app, which spans the apps of one Open Platform account).
/// Its `Debug` leaves the phone tags out: they identify a number.
#[derive(Clone)]
pub enum UserLookup {
    /// WeChat's per-app id.
    Openid(String),
    /// WeChat's cross-app id.
    Unionid(String),
    /// Keyed hashes of the phone number, one per configured encryption key
    /// (see `auth::seal`): a row matches whichever key indexed it.
    PhoneTags(Vec<Vec<u8>>),
}

impl std::fmt::Debug for UserLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserLookup::Openid(o) => f.debug_tuple("Openid").field(o).finish(),
            UserLookup::Unionid(u) => f.debug_tuple("Unionid").field(u).finish(),
            UserLookup::PhoneTags(tags) => write!(f, "PhoneTags(<{} tags redacted>)", tags.len()),
        }
    }
}

/// A session as operators and exports see it: never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    /// The session id.
    pub id: String,
    /// The app.
    pub appid: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, when ended.
    pub revoked_at: Option<i64>,
    /// Why it ended (`logout`, `refresh_token_reuse`, `admin`).
    pub revoked_reason: Option<String>,
    /// When its current refresh token was issued (the last refresh).
    pub last_refresh_at: i64,
    /// Whether it can still be refreshed at `now` (not ended, an unused
    /// refresh token that has not expired).
    pub active: bool,
}

/// A user's row as a re-seal reads it. Its `Debug` names the row and the
/// sizes only: the phone's lookup tag identifies a number.
#[derive(Clone)]
pub struct SealedRow {
    /// The user id.
    pub id: String,
    /// The app.
    pub appid: String,
    /// The openid (part of the session_key's associated data).
    pub openid: String,
    /// The sealed session_key.
    pub session_key_enc: Vec<u8>,
    /// The sealed phone number.
    pub phone_enc: Option<Vec<u8>>,
    /// The phone number's lookup tag.
    pub phone_lookup: Option<Vec<u8>>,
}

/// New sealed values for a row, written only if the row still holds what
/// was read (a login meanwhile wins; the next pass picks the row up).
#[derive(Clone)]
pub struct Resealed {
    /// The row as read.
    pub read: SealedRow,
    /// The session_key sealed with the current key.
    pub session_key_enc: Vec<u8>,
    /// The phone sealed with the current key.
    pub phone_enc: Option<Vec<u8>>,
    /// The phone's tag under the current key.
    pub phone_lookup: Option<Vec<u8>>,
}

/// `<n bytes>` for a sealed value, never the bytes.
struct Sealed<'a>(Option<&'a [u8]>);

impl std::fmt::Debug for Sealed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(b) => write!(f, "<{} bytes redacted>", b.len()),
            None => f.write_str("None"),
        }
    }
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("id", &self.id)
            .field("appid", &self.appid)
            .field("session_key_enc", &Sealed(Some(&self.session_key_enc)))
            .field("phone_enc", &Sealed(self.phone_enc.as_deref()))
            .field("phone_lookup", &Sealed(self.phone_lookup.as_deref()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Resealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resealed")
            .field("read", &self.read)
            .field("session_key_enc", &Sealed(Some(&self.session_key_enc)))
            .field("phone_enc", &Sealed(self.phone_enc.as_deref()))
            .field("phone_lookup", &Sealed(self.phone_lookup.as_deref()))
            .finish()
    }
}

struct RevokeUserSessions {
    user_id: String,
    now: i64,
}

impl Write for RevokeUserSessions {
    type Output = Vec<String>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let rows = query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 \
                 WHERE user_id = $3 AND revoked_at IS NULL RETURNING id",
            )
            .bind(self.now)
            .bind(RevokeReason::Admin.as_str())
            .bind(&self.user_id)
            .fetch_all(tx)
            .await?;
            rows.iter().map(|r| r.try_get("id")).collect()
        })
    }
}

/// Everything keyed by the user, deleted in one commit, with the audit
/// entry saying so.
struct DeleteUser {
    user_id: String,
    now: i64,
    /// Tombstones older than this can no longer match a valid access token.
    tombstones_before: i64,
    audit: NewAuditEntry,
}

/// Tables holding rows keyed by a user id (`users` itself last), in the
/// order a deletion empties them. Tests check each is empty afterwards.
/// Their past changes in the change log are scrubbed soon after, in the
/// background (`change_scrubs`; the log has no index by user): the
/// deletion itself logs a `delete` for each of their documents.
pub const USER_TABLES: &[(&str, &str)] = &[
    (
        "refresh_tokens",
        "session_id IN (SELECT id FROM sessions WHERE user_id = $1)",
    ),
    ("sessions", "user_id = $1"),
    ("idempotency_keys", "user_id = $1"),
    ("collection_counts", "user_id = $1"),
    ("user_usage", "user_id = $1"),
    ("documents", "user_id = $1"),
    ("files", "user_id = $1"),
    ("file_usage", "user_id = $1"),
    ("import_user_map", "user_id = $1"),
    ("subscriptions", "user_id = $1"),
    ("message_sends", "user_id = $1"),
    ("users", "id = $1"),
];

/// A deleted account: its sessions, and its documents (each a `delete`
/// in the change log, so watches of shared collections drop them).
pub(super) struct DeletedUser {
    sessions: Vec<String>,
    documents: Vec<Change>,
}

impl Write for DeleteUser {
    type Output = Option<DeletedUser>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Option<DeletedUser>>> {
        Box::pin(async move {
            let exists = query("SELECT id FROM users WHERE id = $1")
                .bind(&self.user_id)
                .fetch_optional(tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            let sessions: Vec<String> = query("SELECT id FROM sessions WHERE user_id = $1")
                .bind(&self.user_id)
                .fetch_all(tx)
                .await?
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<std::result::Result<_, _>>()?;
            query("DELETE FROM session_tombstones WHERE revoked_at < $1")
                .bind(self.tombstones_before)
                .execute(tx)
                .await?;
            query(
                "INSERT INTO session_tombstones (session_id, revoked_at) \
                 SELECT id, $2 FROM sessions WHERE user_id = $1 \
                 ON CONFLICT (session_id) DO UPDATE SET revoked_at = excluded.revoked_at",
            )
            .bind(&self.user_id)
            .bind(self.now)
            .execute(tx)
            .await?;
            let documents = query(
                "SELECT id, appid, collection, version, created_at, updated_at \
                 FROM documents WHERE user_id = $1",
            )
            .bind(&self.user_id)
            .fetch_all(tx)
            .await?
            .iter()
            .map(|r| {
                Ok(Change {
                    appid: r.try_get("appid")?,
                    collection: r.try_get("collection")?,
                    doc_id: r.try_get("id")?,
                    // No trace of the deleted user is kept: a watch drops
                    // a removed document by its id alone.
                    user_id: String::new(),
                    op: ChangeOp::Delete,
                    data: None,
                    updated: Vec::new(),
                    removed: Vec::new(),
                    version: r.try_get("version")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
            for (table, condition) in USER_TABLES {
                query(&format!("DELETE FROM {table} WHERE {condition}"))
                    .bind(&self.user_id)
                    .execute(tx)
                    .await?;
            }
            query(
                "INSERT INTO change_scrubs (user_id, requested_at) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(&self.user_id)
            .bind(self.now)
            .execute(tx)
            .await?;
            insert_audit(tx, &self.audit).await?;
            Ok(Some(DeletedUser {
                sessions,
                documents,
            }))
        })
    }
    fn committed(&self, _: &Option<DeletedUser>, users: &UserCache) {
        users.forget(&self.user_id);
    }
    fn changes(&self, output: &Option<DeletedUser>, out: &mut Vec<Change>) {
        if let Some(deleted) = output {
            out.extend(deleted.documents.iter().cloned());
        }
    }
}

struct ResealBatch {
    rows: Vec<Resealed>,
}

impl Write for ResealBatch {
    type Output = u64;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut done = 0;
            for r in &self.rows {
                let updated = query(
                    "UPDATE users SET session_key_enc = $1, phone_enc = $2, phone_lookup = $3 \
                     WHERE id = $4 AND session_key_enc = $5 \
                       AND ((phone_enc IS NULL AND $6 = 0) OR phone_enc = $7)",
                )
                .bind(r.session_key_enc.clone())
                .bind(r.phone_enc.clone())
                .bind(r.phone_lookup.clone())
                .bind(&r.read.id)
                .bind(r.read.session_key_enc.clone())
                .bind(i64::from(r.read.phone_enc.is_some()))
                .bind(r.read.phone_enc.clone().unwrap_or_default())
                .execute(tx)
                .await?;
                done += updated.rows_affected();
            }
            Ok(done)
        })
    }
    fn committed(&self, _: &u64, users: &UserCache) {
        for r in &self.rows {
            users.forget(&r.read.id);
        }
    }
}

impl Store {
    /// Users matching `lookup`, in `appid` (any app when None), at most 100.
    pub async fn find_users(
        &self,
        appid: Option<&str>,
        lookup: &UserLookup,
    ) -> Result<Vec<UserRecord>> {
        // One plain condition per case, so each reads its index
        // (users (appid, openid), users_unionid, users_phone_lookup).
        enum Key {
            Text(String),
            Bytes(Vec<u8>),
        }
        let (column, values): (&str, Vec<Key>) = match lookup {
            UserLookup::Openid(v) => ("openid", vec![Key::Text(v.clone())]),
            UserLookup::Unionid(v) => ("unionid", vec![Key::Text(v.clone())]),
            UserLookup::PhoneTags(tags) => (
                "phone_lookup",
                tags.iter().cloned().map(Key::Bytes).collect(),
            ),
        };
        let mut users = Vec::new();
        for value in values {
            let (sql, app) = match appid {
                Some(app) => (
                    format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE appid = $1 AND {column} = $2 ORDER BY id LIMIT 100"
                    ),
                    Some(app),
                ),
                None => (
                    format!(
                        "SELECT {USER_COLUMNS} FROM users WHERE {column} = $1 ORDER BY id LIMIT 100"
                    ),
                    None,
                ),
            };
            let mut query = sqlx::query(&sql);
            if let Some(app) = app {
                query = query.bind(app);
            }
            query = match value {
                Key::Text(text) => query.bind(text),
                Key::Bytes(bytes) => query.bind(bytes),
            };
            for row in query.fetch_all(&self.pool).await? {
                users.push(UserRecord::from_row(&row)?);
            }
        }
        users.sort_by(|a, b| a.id.cmp(&b.id));
        users.dedup_by(|a, b| a.id == b.id);
        Ok(users)
    }

    /// A user's sessions, newest first, with whether each is still active
    /// at `now`.
    pub async fn user_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionSummary>> {
        let rows = sqlx::query(
            "SELECT s.id, s.appid, s.created_at, s.revoked_at, s.revoked_reason, \
               MAX(r.created_at) AS last_refresh_at, \
               SUM(CASE WHEN r.used_at IS NULL AND r.expires_at > $2 THEN 1 ELSE 0 END) AS live \
             FROM sessions s JOIN refresh_tokens r ON r.session_id = s.id \
             WHERE s.user_id = $1 \
             GROUP BY s.id, s.appid, s.created_at, s.revoked_at, s.revoked_reason \
             ORDER BY s.created_at DESC, s.id DESC",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let revoked_at: Option<i64> = r.try_get("revoked_at")?;
                let live: i64 = r.try_get("live")?;
                Ok(SessionSummary {
                    id: r.try_get("id")?,
                    appid: r.try_get("appid")?,
                    created_at: r.try_get("created_at")?,
                    revoked_at,
                    revoked_reason: r.try_get("revoked_reason")?,
                    last_refresh_at: r.try_get("last_refresh_at")?,
                    active: revoked_at.is_none() && live > 0,
                })
            })
            .collect()
    }

    /// Ends every session of the user still open; their ids.
    pub async fn revoke_user_sessions(&self, user_id: &str, now: i64) -> Result<Vec<String>> {
        self.writer
            .submit(RevokeUserSessions {
                user_id: user_id.to_owned(),
                now,
            })
            .await
    }

    /// Deletes the user and every row keyed by them (see [`USER_TABLES`]),
    /// leaves tombstones for their sessions and appends `audit`, in one
    /// commit. The ids of the sessions that were deleted; None if there is
    /// no such user.
    pub async fn delete_user(
        &self,
        user_id: &str,
        now: i64,
        tombstones_before: i64,
        audit: NewAuditEntry,
    ) -> Result<Option<Vec<String>>> {
        self.writer
            .submit(DeleteUser {
                user_id: user_id.to_owned(),
                now,
                tombstones_before,
                audit,
            })
            .await
            .map(|deleted| deleted.map(|d| d.sessions))
    }

    /// A page of the user's documents in every collection, by id, after
    /// `after_id`.
    pub async fn user_documents(
        &self,
        user_id: &str,
        after_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DocumentRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM documents WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(user_id)
        .bind(after_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(DocumentRecord::from_row).collect()
    }

    /// How many documents the user holds in all.
    pub async fn user_document_count(&self, user_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM documents WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Which user owns a document (any collection's).
    pub async fn document_owner(&self, collection: &str, id: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM documents WHERE id = $1 AND collection = $2")
            .bind(id)
            .bind(collection)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("user_id")).transpose()?)
    }

    /// How many users there are (a re-seal's total).
    pub async fn user_count(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// A page of users' sealed columns, by id, after `after_id`.
    pub async fn sealed_rows(&self, after_id: &str, limit: i64) -> Result<Vec<SealedRow>> {
        let rows = sqlx::query(
            "SELECT id, appid, openid, session_key_enc, phone_enc, phone_lookup FROM users \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SealedRow {
                    id: r.try_get("id")?,
                    appid: r.try_get("appid")?,
                    openid: r.try_get("openid")?,
                    session_key_enc: r.try_get("session_key_enc")?,
                    phone_enc: r.try_get("phone_enc")?,
                    phone_lookup: r.try_get("phone_lookup")?,
                })
            })
            .collect()
    }

    /// Writes re-sealed values (each only if its row is unchanged since it
    /// was read); how many rows were written.
    pub async fn write_resealed(&self, rows: Vec<Resealed>) -> Result<u64> {
        self.writer.submit(ResealBatch { rows }).await
    }
}
