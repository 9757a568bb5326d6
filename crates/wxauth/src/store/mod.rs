//! Persistence: SQLite or PostgreSQL, chosen by the URL scheme.
//!
//! Reads go straight to the pool. Every write goes through the group-commit
//! writer (`writer`): one task takes all writes that are waiting, applies
//! them in one transaction (each in its own savepoint, so one failing write
//! does not undo the others) and commits once. A write is acknowledged only
//! after that commit, which is durable: SQLite runs in WAL mode with
//! `synchronous=FULL` (fsync on every commit), PostgreSQL with its default
//! `synchronous_commit=on`. Under load many writes share one fsync.
//!
//! The SQL is written once for both databases (sqlx's `Any` driver; `$N`
//! placeholders, `ON CONFLICT`, `RETURNING`), with one migrations folder per
//! backend for the few type names that differ.

mod documents;
mod migrations;
mod records;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};

use crate::error::{Error, Result};
pub use documents::{
    CreateOutcome, DocumentRecord, Idempotency, NewDocument, ReplaceOutcome, StoredAnswer,
    UserLimit, UserQuota,
};
pub use records::{LoginWrite, RefreshOutcome, SessionRecord, UserRecord};
pub use writer::{ProfileChange, WriterStats};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path`
    Sqlite,
    /// `postgres://…`
    Postgres,
}

impl Backend {
    /// The backend for a URL, or an error naming the supported schemes.
    pub fn of(url: &str) -> Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(Error::InvalidRequest(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST/DB",
                crate::config::redact_url(url)
            )))
        }
    }
}

/// The service's storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: Arc<writer::Writer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn sqlite_url(url: &str) -> String {
    // Create the file when missing.
    if url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

impl Store {
    /// Connects without migrating (see [`Store::migrate`]).
    pub async fn connect(url: &str) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::of(url)?;
        let (url, max) = match backend {
            Backend::Sqlite => {
                if let Some(path) = url
                    .strip_prefix("sqlite://")
                    .map(|p| p.split('?').next().unwrap_or(p))
                {
                    if let Some(dir) = std::path::Path::new(path)
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                    {
                        std::fs::create_dir_all(dir).map_err(|e| {
                            Error::internal(format!("cannot create {}: {e}", dir.display()))
                        })?;
                    }
                }
                (sqlite_url(url), 8)
            }
            Backend::Postgres => (url.to_owned(), 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets reads run beside the writer; FULL makes
                        // each commit survive a power cut.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| Error::internal(format!("cannot open the database: {e}")))?;
        let begin = (backend == Backend::Sqlite).then_some("BEGIN IMMEDIATE");
        let writer = Arc::new(writer::Writer::spawn(pool.clone(), begin));
        Ok(Self {
            pool,
            backend,
            writer,
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> Result<()> {
        migrations::run(&self.pool, self.backend).await
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// How many commits and writes the group-commit writer has done.
    pub fn writer_stats(&self) -> WriterStats {
        self.writer.stats()
    }

    /// Stops accepting writes and waits for the writer to finish what it has.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    // ----- writes (through the group-commit writer) -----

    /// Creates or updates the user (appid, openid), stores the new
    /// session_key, and opens a session with its first refresh token, in one
    /// commit. Returns the user and whether it was created.
    pub async fn login(&self, write: LoginWrite) -> Result<(UserRecord, bool)> {
        self.writer
            .submit(writer::Op::Login(write))
            .await?
            .into_login()
    }

    /// Opens another session for an existing user (a repeated login code).
    pub async fn new_session(
        &self,
        user_id: &str,
        appid: &str,
        session_id: &str,
        refresh_hash: Vec<u8>,
        refresh_expires_at: i64,
        now: i64,
    ) -> Result<()> {
        self.writer
            .submit(writer::Op::NewSession {
                user_id: user_id.to_owned(),
                appid: appid.to_owned(),
                session_id: session_id.to_owned(),
                refresh_hash,
                refresh_expires_at,
                now,
            })
            .await?
            .into_unit()
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
            .submit(writer::Op::RotateRefresh {
                old_hash,
                new_hash,
                new_expires_at,
                now,
            })
            .await?
            .into_refresh()
    }

    /// Revokes a session; false if it was already revoked or does not exist.
    pub async fn revoke_session(
        &self,
        session_id: &str,
        reason: &'static str,
        now: i64,
    ) -> Result<bool> {
        self.writer
            .submit(writer::Op::RevokeSession {
                session_id: session_id.to_owned(),
                reason,
                now,
            })
            .await?
            .into_bool()
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
            .submit(writer::Op::ModifyProfile {
                user_id: user_id.to_owned(),
                modify: change,
            })
            .await?
            .into_user()
    }

    /// Stores the user's (encrypted) phone number.
    pub async fn set_phone(&self, user_id: &str, phone_enc: Vec<u8>) -> Result<bool> {
        self.writer
            .submit(writer::Op::SetPhone {
                user_id: user_id.to_owned(),
                phone_enc,
            })
            .await?
            .into_bool()
    }

    /// Creates a document, honouring its idempotency key and the
    /// collection's size limit, in one commit.
    pub async fn create_document(&self, doc: NewDocument) -> Result<CreateOutcome> {
        self.writer
            .submit(writer::Op::CreateDocument(doc))
            .await?
            .into_created()
    }

    /// Replaces a document's data if it is the user's and, when given, still
    /// at `if_version`, and the user's byte quota allows the new size.
    #[allow(clippy::too_many_arguments)]
    pub async fn replace_document(
        &self,
        user_id: &str,
        collection: &str,
        id: &str,
        data: String,
        if_version: Option<i64>,
        now: i64,
        quota: UserQuota,
    ) -> Result<ReplaceOutcome> {
        self.writer
            .submit(writer::Op::ReplaceDocument {
                user_id: user_id.to_owned(),
                collection: collection.to_owned(),
                id: id.to_owned(),
                data,
                if_version,
                now,
                quota,
            })
            .await?
            .into_replaced()
    }

    /// Deletes a document of the user; false if there was none.
    pub async fn delete_document(&self, user_id: &str, collection: &str, id: &str) -> Result<bool> {
        self.writer
            .submit(writer::Op::DeleteDocument {
                user_id: user_id.to_owned(),
                collection: collection.to_owned(),
                id: id.to_owned(),
            })
            .await?
            .into_bool()
    }

    /// Forgets idempotency keys created before `before` (Unix ms).
    pub async fn expire_idempotency_keys(&self, before: i64) -> Result<u64> {
        self.writer
            .submit(writer::Op::ExpireIdempotencyKeys { before })
            .await?
            .into_count()
    }

    // ----- reads -----

    /// One of the user's documents.
    pub async fn document(
        &self,
        user_id: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<DocumentRecord>> {
        documents::get(&self.pool, user_id, collection, id).await
    }

    /// The user's documents in a collection, newest first, with ids below
    /// `before` when given.
    pub async fn documents(
        &self,
        user_id: &str,
        collection: &str,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DocumentRecord>> {
        documents::list(&self.pool, user_id, collection, before, limit).await
    }

    /// A user by id.
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM users WHERE id = $1",
            records::USER_COLUMNS
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(UserRecord::from_row).transpose()
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

    /// Sessions revoked at or after `since` (to rebuild the revocation cache
    /// at start-up): (session id, revoked_at).
    pub async fn revoked_since(&self, since: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL AND revoked_at >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("revoked_at")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::of("sqlite://x.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert!(Backend::of("mysql://u:pw@h/db").is_err());
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
