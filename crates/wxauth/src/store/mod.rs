//! Persistence: SQLite or PostgreSQL, chosen by the URL scheme.
//!
//! Reads go straight to the pool (on PostgreSQL, reads of one document or
//! user made at the same time are fetched together: `grouped_reads`).
//! Every write goes through the group-commit
//! writer (`writer`): one thread takes all writes that are waiting, applies
//! them in one transaction (each in its own savepoint, so one failing write
//! does not undo the others) and commits once. A write is acknowledged only
//! after that commit, which is durable: SQLite runs in WAL mode with
//! `synchronous=FULL` (fsync on every commit), PostgreSQL with its default
//! `synchronous_commit=on`. Under load many writes share one fsync.
//!
//! The SQL is written once for both databases (`$N` placeholders,
//! `ON CONFLICT`, `RETURNING`), with one migrations folder per backend for
//! the few type names that differ. Reads and PostgreSQL writes run through
//! sqlx's `Any` driver; SQLite writes run on the writer's own connection
//! and thread (rusqlite), so a batch never waits for another thread
//! between statements (`exec` says why). On PostgreSQL, where each
//! statement is a round trip, a login and a plain create are one statement
//! each (data-modifying `WITH`).

mod accounts;
mod audit;
mod bounded_reads;
mod change_log;
mod change_upkeep;
mod changes;
mod documents;
mod exec;
mod files;
mod grouped_reads;
pub mod hold;
mod import;
mod migrations;
mod query;
mod rows;
mod sessions;
mod snapshot;
mod subscriptions;
mod user_cache;
mod users;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection as _, Executor};

use crate::error::{Error, Result};
pub use accounts::{Resealed, SealedRow, SessionSummary, USER_TABLES, UserLookup};
pub use audit::{AuditEntry, AuditQuery, NewAuditEntry};
pub use change_log::CHANGES_PER_READ;
pub use changes::{Change, ChangeFeed, ChangeOp, CommittedPosition, LoggedChange, changed_fields};
pub use documents::{
    CreateOutcome, FirstCreate, Idempotency, NewDocument, ReplaceOutcome, Replacement, UserLimit,
    UserQuota,
};
pub use files::{FileInsert, FileRecord, IDS_PER_LOOKUP, NewFile};
pub use import::{DocumentImported, ImportLimits, ImportedDocument, ImportedUser, UserImported};
pub use query::{
    After, DocumentQuery, Field, Filter, IndexSpec, KeyValue, Op, Scalar, Scope, SortKey,
    parse_path,
};
pub use rows::{DocumentRecord, UserRecord};
pub use sessions::{LoggedRevocation, NewSession, RefreshOutcome, SessionRecord};
pub use snapshot::{ExportPosition, SnapshotReader};
pub use subscriptions::{ConsentAnswer, ConsentChange, ConsentRecord, Reservation, SendRecord};
pub use users::{LoggedIn, LoginWrite, ProfileChange};
pub use writer::WriterStats;

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

/// How a store runs, from the configuration.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The longest a query-language read (`where`, `order_by`, counts) may
    /// take, waiting for its turn included.
    pub query_timeout: Duration,
    /// Whether document writes are written to the change log (realtime
    /// watches). Off, writes cost what they did before realtime; the same
    /// on every instance.
    pub change_log: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(5),
            change_log: true,
        }
    }
}

/// The service's storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: Arc<writer::Writer>,
    users: Arc<user_cache::UserCache>,
    /// PostgreSQL: reads of one document, grouped under load.
    document_reads: Option<Arc<grouped_reads::GroupedReads<grouped_reads::DocumentRead>>>,
    /// PostgreSQL: reads of one user row, grouped under load.
    user_reads: Option<Arc<grouped_reads::GroupedReads<grouped_reads::UserRead>>>,
    /// SQLite: this process's hold on the database (see [`hold`]).
    _hold: Option<Arc<hold::SharedHold>>,
    /// The query language's reads, bounded in time and number.
    bounded: Arc<bounded_reads::BoundedReads>,
    /// This process's commits of document changes (realtime watches).
    changes: changes::ChangeFeed,
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

/// The file the pool's SQLite database is, as SQLite resolved it from the
/// URL (the writer opens the same file).
async fn sqlite_file(pool: &AnyPool) -> Result<std::path::PathBuf> {
    use sqlx::Row;
    let rows = sqlx::query("PRAGMA database_list").fetch_all(pool).await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        if name == "main" {
            let file: String = row.try_get("file")?;
            return Ok(file.into());
        }
    }
    Err(Error::internal(
        "database: SQLite names no main database file",
    ))
}

/// A pooled PostgreSQL connection idle this long is pinged before use.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(1);

impl Store {
    /// Connects without migrating (see [`Store::migrate`]), with the
    /// default options.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects without migrating, with `options`.
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self> {
        install_default_drivers();
        let backend = Backend::of(url)?;
        let mut held = None;
        let (url, max) = match backend {
            Backend::Sqlite => {
                if let Some(path) = url
                    .strip_prefix("sqlite://")
                    .map(|p| p.split('?').next().unwrap_or(p))
                {
                    let file = std::path::Path::new(path);
                    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                        crate::private_files::create_dir_all(dir).map_err(|e| {
                            Error::internal_from(format!("cannot create {}", dir.display()), e)
                        })?;
                    }
                    let on_disk =
                        !url.contains("mode=memory") && !path.is_empty() && !path.starts_with(':');
                    if on_disk && !url.contains("mode=ro") {
                        held = Some(Arc::new(hold::share(file)?));
                    }
                    // A new database is made 0600 before SQLite opens it
                    // (its -wal and -shm files take the same mode).
                    if on_disk
                        && !url.contains("mode=ro")
                        && !file.exists()
                        && let Err(e) = crate::private_files::create_new(file)
                        && e.kind() != std::io::ErrorKind::AlreadyExists
                    {
                        return Err(Error::internal_from(
                            format!("cannot create {}", file.display()),
                            e,
                        ));
                    }
                }
                (sqlite_url(url), 8)
            }
            Backend::Postgres => (url.to_owned(), 16),
        };
        // A read-only SQLite file (a backup being checked) cannot be
        // switched to WAL; it is only read.
        let read_only = backend == Backend::Sqlite && url.contains("mode=ro");
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(5))
            // A SQLite connection does not break; checking one on every
            // acquire is another hand-off to its thread per read. A
            // PostgreSQL connection can (a server restart, a proxy's idle
            // cut), but a ping on every acquire is a second round trip per
            // read: only one idle for a while is checked first (HikariCP
            // skips its check the same way for connections used within
            // the last 500 ms).
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite || meta.idle_for < PING_WHEN_IDLE_FOR {
                        return Ok(true);
                    }
                    match conn.ping().await {
                        Ok(()) => Ok(true),
                        Err(e) => {
                            tracing::info!(error = %e, "an idle database connection is gone; taking another");
                            Ok(false)
                        }
                    }
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite && read_only {
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                    } else if backend == Backend::Sqlite {
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
            .map_err(|e| Error::internal_from("cannot open the database", e))?;
        let (engine, bounded) = match backend {
            Backend::Sqlite => {
                let path = sqlite_file(&pool).await?;
                let bounded =
                    bounded_reads::BoundedReads::sqlite(path.clone(), options.query_timeout);
                (
                    writer::Engine::Sqlite {
                        path,
                        connection: None,
                    },
                    bounded,
                )
            }
            Backend::Postgres => (
                writer::Engine::Postgres {
                    open: false,
                    url: url.clone(),
                    held: None,
                },
                bounded_reads::BoundedReads::postgres(&url, options.query_timeout).await?,
            ),
        };
        let users = Arc::new(user_cache::UserCache::default());
        let changes = changes::ChangeFeed::new(options.change_log);
        let writer = Arc::new(writer::Writer::spawn(
            engine,
            users.clone(),
            changes.clone(),
        )?);
        // SQLite reads are in-process: nothing to save by grouping them.
        let (document_reads, user_reads) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => (
                grouped_reads::GroupedReads::start(&pool).map(Arc::new),
                grouped_reads::GroupedReads::start(&pool).map(Arc::new),
            ),
        };
        Ok(Self {
            pool,
            backend,
            writer,
            users,
            document_reads,
            user_reads,
            _hold: held,
            bounded: Arc::new(bounded),
            changes,
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &StoreOptions::default()).await
    }

    /// Connects with `options` and brings the schema up to date.
    pub async fn open_with(url: &str, options: &StoreOptions) -> Result<Self> {
        let store = Self::connect_with(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations (embedded in the binary).
    pub async fn migrate(&self) -> Result<()> {
        migrations::run(&self.pool, self.backend).await
    }

    /// The schema version the database is at, and the newest this binary
    /// knows.
    pub async fn schema_versions(&self) -> Result<(i64, i64)> {
        Ok((migrations::applied(&self.pool).await?, migrations::latest()))
    }

    /// Writes a consistent copy of a SQLite database to `path` while it is
    /// in use (`VACUUM INTO`: one read transaction, so the copy holds
    /// exactly the writes committed before it began; writers carry on).
    /// PostgreSQL has `pg_dump` for this.
    pub async fn backup_into(&self, path: &str) -> Result<()> {
        if self.backend != Backend::Sqlite {
            return Err(Error::InvalidRequest(
                "backup copies SQLite databases; for PostgreSQL use pg_dump (e.g. pg_dump -Fc -f wxauth.dump DATABASE_URL)".into(),
            ));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// `PRAGMA integrity_check` (SQLite): "ok", or what is wrong.
    pub async fn integrity_check(&self) -> Result<String> {
        if self.backend != Backend::Sqlite {
            return Ok("ok".into());
        }
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&self.pool)
            .await?;
        let lines: Vec<String> = rows
            .iter()
            .map(|r| sqlx::Row::try_get::<String, _>(r, 0))
            .collect::<std::result::Result<_, _>>()?;
        Ok(lines.join("; "))
    }

    /// Rows of `sql` for many keys in few queries: its `{in}` becomes the
    /// placeholders of up to [`IDS_PER_LOOKUP`] of `values` at a time,
    /// numbered after the `fixed` values bound first.
    pub(crate) async fn rows_in(
        &self,
        sql: &str,
        fixed: &[&str],
        values: &[String],
    ) -> Result<Vec<sqlx::any::AnyRow>> {
        let mut rows = Vec::new();
        for chunk in values.chunks(IDS_PER_LOOKUP) {
            let marks: Vec<String> = (fixed.len() + 1..=fixed.len() + chunk.len())
                .map(|i| format!("${i}"))
                .collect();
            let text = sql.replace("{in}", &marks.join(", "));
            let mut q = sqlx::query(&text);
            for v in fixed {
                q = q.bind(*v);
            }
            for v in chunk {
                q = q.bind(v);
            }
            rows.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(rows)
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

    /// Reads of one document or user answered by a query that answered
    /// others too (PostgreSQL; see `grouped_reads`).
    pub fn grouped_reads(&self) -> u64 {
        self.document_reads.as_ref().map_or(0, |r| r.grouped())
            + self.user_reads.as_ref().map_or(0, |r| r.grouped())
    }

    /// Keeps hot user rows in memory (see `user_cache`). Only for a
    /// process that is the database's only writer: the cache sees this
    /// process's writes alone.
    pub fn cache_users(&self, on: bool) {
        self.users.enable(on);
    }

    /// Whether [`Store::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Stops accepting writes and waits for the writer to finish what it has.
    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
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
