//! Reads of the query language (`where`, `order_by`, `_count`): the only
//! reads whose cost a client chooses. They run on connections of their
//! own, a few at a time, each within a time bound, and one whose request
//! went away is stopped, so expensive queries can neither hang nor take
//! the connections every other request reads with.
//!
//! - **SQLite**: rusqlite connections on blocking threads, interrupted
//!   (`sqlite3_interrupt`) at the deadline or when the caller's future is
//!   dropped.
//! - **PostgreSQL**: a pool of its own whose connections carry
//!   `statement_timeout` and `client_connection_check_interval`; a
//!   connection whose caller went away mid-statement is closed instead of
//!   returned, so the server cancels the statement within a second.
//!
//! Either way at most [`AT_ONCE`] run at once; waiting for a turn counts
//! toward the deadline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::exec::{Row, SqliteTx, Value};
use crate::error::{Error, Result};

/// Query-language reads at once per process: half of the main read pool,
/// so the other half always serves everything else.
pub const AT_ONCE: usize = 4;

/// Where the bounded reads run.
pub(super) struct BoundedReads {
    timeout: Duration,
    permits: Arc<Semaphore>,
    engine: Engine,
}

enum Engine {
    Sqlite {
        path: PathBuf,
        idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
    },
    Postgres(AnyPool),
}

impl std::fmt::Debug for BoundedReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedReads")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn timed_out(timeout: Duration) -> Error {
    Error::QueryTimeout(format!(
        "the query took longer than {} ms (limits.query_timeout_ms); narrow it with an indexed field or a smaller limit",
        timeout.as_millis()
    ))
}

impl BoundedReads {
    /// Reads of the SQLite database at `path`.
    pub(super) fn sqlite(path: PathBuf, timeout: Duration) -> Self {
        Self {
            timeout,
            permits: Arc::new(Semaphore::new(AT_ONCE)),
            engine: Engine::Sqlite {
                path,
                idle: Arc::default(),
            },
        }
    }

    /// Reads of the PostgreSQL database at `url` (a pool of their own).
    pub(super) async fn postgres(url: &str, timeout: Duration) -> Result<Self> {
        let ms = timeout.as_millis().max(1);
        let pool = AnyPoolOptions::new()
            .max_connections(u32::try_from(AT_ONCE).unwrap_or(4))
            .min_connections(0)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute(
                        format!(
                            "SET statement_timeout = {ms}; SET client_connection_check_interval = 1000"
                        )
                        .as_str(),
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_lazy(url)
            .map_err(|e| Error::internal_from("cannot open the query pool", e))?;
        Ok(Self {
            timeout,
            permits: Arc::new(Semaphore::new(AT_ONCE)),
            engine: Engine::Postgres(pool),
        })
    }

    /// Runs one read, within the deadline.
    pub(super) async fn fetch_all(&self, sql: String, args: Vec<Value>) -> Result<Vec<Row>> {
        let deadline = Instant::now() + self.timeout;
        let permit = tokio::time::timeout_at(deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| timed_out(self.timeout))?
            .map_err(|_| Error::internal("the query pool is closed"))?;
        match &self.engine {
            Engine::Sqlite { path, idle } => {
                self.sqlite_read(path.clone(), idle.clone(), sql, args, deadline, permit)
                    .await
            }
            Engine::Postgres(pool) => {
                // A little past the server's own statement_timeout, so the
                // server usually ends the statement first and the
                // connection is kept; this deadline is the backstop.
                let backstop = deadline + Duration::from_millis(250);
                let answer = tokio::time::timeout_at(backstop, postgres_read(pool, &sql, args))
                    .await
                    .map_err(|_| timed_out(self.timeout))?;
                drop(permit);
                answer.map_err(|e| {
                    let cancelled = e
                        .as_database_error()
                        .and_then(|d| d.code())
                        .is_some_and(|code| code == "57014");
                    if cancelled {
                        timed_out(self.timeout)
                    } else {
                        Error::from(e)
                    }
                })
            }
        }
    }

    async fn sqlite_read(
        &self,
        path: PathBuf,
        idle: Arc<Mutex<Vec<rusqlite::Connection>>>,
        sql: String,
        args: Vec<Value>,
        deadline: Instant,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Vec<Row>> {
        let conn = {
            let mut idle = idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.pop()
        };
        let conn = match conn {
            Some(c) => c,
            None => open_sqlite(&path)?,
        };
        let interrupt = Arc::new(conn.get_interrupt_handle());
        let done = Arc::new(AtomicBool::new(false));
        // Dropped before the read ends (the request went away, or the
        // deadline passed): the statement is interrupted.
        let guard = InterruptOnDrop {
            handle: interrupt.clone(),
            done: done.clone(),
        };
        let finished = done.clone();
        let mut task = tokio::task::spawn_blocking(move || {
            let mut conn = conn;
            let rows = SqliteTx(&mut conn).rows(&sql, &args, usize::MAX);
            finished.store(true, Ordering::Release);
            idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
            drop(permit);
            rows
        });
        let answer = match tokio::time::timeout_at(deadline, &mut task).await {
            Ok(joined) => joined,
            Err(_) => {
                interrupt.interrupt();
                let _ = task.await;
                return Err(timed_out(self.timeout));
            }
        };
        drop(guard);
        answer.map_err(|e| Error::internal_from("a query thread failed", e))?
    }
}

/// Interrupts the SQLite statement if dropped before it finished.
struct InterruptOnDrop {
    handle: Arc<rusqlite::InterruptHandle>,
    done: Arc<AtomicBool>,
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if !self.done.load(Ordering::Acquire) {
            self.handle.interrupt();
        }
    }
}

fn open_sqlite(path: &std::path::Path) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::internal_from(format!("cannot open {}", path.display()), e))?;
    conn.busy_timeout(Duration::from_secs(5))
        .and_then(|()| conn.execute_batch("PRAGMA query_only = ON;"))
        .map_err(|e| Error::internal_from("setting up a query connection", e))?;
    Ok(conn)
}

/// Runs on a pool connection; one dropped mid-statement is closed rather
/// than returned, so the server (checking the client every second) stops
/// the statement.
async fn postgres_read(
    pool: &AnyPool,
    sql: &str,
    args: Vec<Value>,
) -> std::result::Result<Vec<Row>, sqlx::Error> {
    let conn = pool.acquire().await?;
    let mut guard = CloseOnDrop(Some(conn));
    let rows = match guard.0.as_mut() {
        Some(conn) => {
            super::exec::sqlx_query(sql, args)
                .fetch_all(&mut **conn)
                .await
        }
        None => return Err(sqlx::Error::PoolClosed),
    };
    // Finished, one way or the other: the connection goes back.
    guard.0.take();
    Ok(rows?.into_iter().map(Row::Any).collect())
}

/// Closes (detaches) a pooled connection dropped while in use.
struct CloseOnDrop(Option<sqlx::pool::PoolConnection<sqlx::Any>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}
