//! Group commit: one task owns all writes. It waits for a first write, takes
//! every other write already queued (up to `MAX_BATCH`), applies each inside
//! one transaction, commits once, and only then answers every caller. With
//! 64 concurrent writers that is one fsync for up to 64 writes instead of 64.
//!
//! The writer is a thread of its own with a connection of its own (rusqlite
//! on SQLite, sqlx on PostgreSQL: `Engine`), apart from the pool that
//! serves reads. On PostgreSQL, where every statement is a round trip,
//! writes of one kind that can go together (`Write::apply_together`) are
//! one statement per batch, and a COMMIT with writes already queued begins
//! the next transaction in the same round trip.
//!
//! The engine knows nothing of users or documents: a write is any value
//! implementing [`Write`], whose `Output` is what its caller gets back once
//! the batch is committed. The SQL of each write lives beside its records
//! (`users`, `sessions`, `documents`).

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::changes::{self, Change, ChangeFeed, CommittedPosition};
pub(super) use super::exec::Tx;
use super::exec::{SqliteTx, SqlxTx, query};
use super::user_cache::UserCache;
use crate::error::{Error, Result};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

/// One write the group-commit writer applies. `apply` runs inside the
/// batch's transaction and may run more than once (a batch that is rolled
/// back is applied again), so it must only touch the database.
pub(super) trait Write: Send + Sync + 'static {
    /// What the caller gets once the write is committed.
    type Output: Send + 'static;
    /// The write's statements.
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Self::Output>>;
    /// Whether `apply_together` may take several writes of this kind.
    const TOGETHER: bool = false;
    /// Several writes of this kind (two or more, in queue order) in as few
    /// statements as the database allows: on PostgreSQL every statement is
    /// a round trip to the server and its own executor start, and a batch
    /// of 16 creates in one statement commits about 2.8 times as fast as 16
    /// statements. Answers each write's output, or None for a write that
    /// must be applied alone (it then is, after the group, in the same
    /// transaction). Called only on PostgreSQL and only in a batch's first
    /// attempt: if it fails, the batch runs again with every write alone
    /// in its own savepoint, so a failure stays with its own write. Like
    /// `apply`, it may run more than once and must only touch the database.
    fn apply_together<'a>(
        writes: &'a [&'a Self],
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Result<Vec<Option<Self::Output>>>> {
        let _ = tx;
        Box::pin(async move { Ok(writes.iter().map(|_| None).collect()) })
    }
    /// Runs on the writer's task right after the commit, in commit order,
    /// before the caller hears of it: keeps the user cache in step.
    fn committed(&self, _output: &Self::Output, _users: &UserCache) {}
    /// What the write did to documents, for the change log (recorded in
    /// the same transaction, just before the commit).
    fn changes(&self, _output: &Self::Output, _out: &mut Vec<Change>) {}
}

/// Deletes rows older than `before` with one statement (`sql`, whose `$1`
/// is `before`): housekeeping such as expired idempotency keys and old
/// revocation log entries. Answers how many rows went.
pub(super) struct DeleteBefore {
    pub(super) sql: &'static str,
    pub(super) before: i64,
}

impl Write for DeleteBefore {
    type Output = u64;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let done = query(self.sql).bind(self.before).execute(tx).await?;
            Ok(done.rows_affected())
        })
    }
}

/// Pairs each row a group's statement answered with the write it is for
/// (its `ord` column: the write's place in `writes`). Every row sent must
/// come back once; anything else and the group is not trusted: the batch
/// then runs again with each write alone.
pub(super) fn answered_rows<'w, W>(
    found: Vec<super::exec::Row>,
    sent: usize,
    writes: &[&'w W],
) -> Result<Vec<(super::exec::Row, usize, &'w W)>> {
    if found.len() != sent {
        return Err(Error::internal(
            "database: a group of writes answered the wrong rows",
        ));
    }
    found
        .into_iter()
        .map(|row| {
            let ord = usize::try_from(row.try_get::<i64>("ord")?).ok();
            let write = ord.and_then(|ord| writes.get(ord).map(|w| (ord, *w)));
            let (ord, write) =
                write.ok_or_else(|| Error::internal("database: a group row's ord out of range"))?;
            Ok((row, ord, write))
        })
        .collect()
}

/// How one write went in an attempt.
enum Applied {
    Done,
    Failed,
    /// Lost to a concurrent transaction: the whole batch must run again.
    Contention(Error),
}

/// How a group of writes went in an attempt.
enum Grouped {
    /// For each write of the group, whether the group applied it.
    Applied(Vec<bool>),
    /// The group's statement failed: the batch runs again, each write alone.
    Failed,
    /// Lost to a concurrent transaction: the whole batch must run again.
    Contention(Error),
}

/// A queued write with its caller's reply, its type erased so one batch
/// can hold writes of every kind.
trait Job: Send + Any {
    fn apply<'a>(&'a mut self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Applied>;
    /// The write's kind, if writes of that kind can be applied together.
    fn together(&self) -> Option<TypeId>;
    fn as_any(&mut self) -> &mut dyn Any;
    /// Applies this write and `others` (all of this one's kind) together.
    fn apply_with<'a>(
        &'a mut self,
        others: Vec<&'a mut Box<dyn Job>>,
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Grouped>;
    /// Answers the caller: its own result when the batch committed, else
    /// the batch's failure.
    fn answer(self: Box<Self>, failure: Option<Error>, users: &UserCache);
    /// The changes this attempt's result made to documents.
    fn changes(&self, out: &mut Vec<Change>);
}

struct Pending<W: Write> {
    write: W,
    result: Option<Result<W::Output>>,
    reply: oneshot::Sender<Result<W::Output>>,
}

impl<W: Write> Job for Pending<W> {
    fn apply<'a>(&'a mut self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            match self.write.apply(tx).await {
                Err(Error::Contention(cause)) => {
                    self.result = None;
                    Applied::Contention(Error::Contention(cause))
                }
                result => {
                    let failed = result.is_err();
                    self.result = Some(result);
                    if failed {
                        Applied::Failed
                    } else {
                        Applied::Done
                    }
                }
            }
        })
    }

    fn together(&self) -> Option<TypeId> {
        W::TOGETHER.then(TypeId::of::<W>)
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }

    fn apply_with<'a>(
        &'a mut self,
        others: Vec<&'a mut Box<dyn Job>>,
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Grouped> {
        Box::pin(async move {
            let mut group: Vec<&mut Pending<W>> = vec![self];
            for other in others {
                match other.as_mut().as_any().downcast_mut::<Pending<W>>() {
                    Some(pending) => group.push(pending),
                    None => return Grouped::Failed,
                }
            }
            let writes: Vec<&W> = group.iter().map(|p| &p.write).collect();
            let outputs = W::apply_together(&writes, tx).await;
            drop(writes);
            match outputs {
                Err(Error::Contention(cause)) => Grouped::Contention(Error::Contention(cause)),
                Err(e) => {
                    tracing::debug!(error = %e, writes = group.len(), "a group of writes failed; applying each alone");
                    Grouped::Failed
                }
                Ok(outputs) if outputs.len() != group.len() => Grouped::Failed,
                Ok(outputs) => Grouped::Applied(
                    group
                        .into_iter()
                        .zip(outputs)
                        .map(|(pending, output)| match output {
                            Some(output) => {
                                pending.result = Some(Ok(output));
                                true
                            }
                            None => false,
                        })
                        .collect(),
                ),
            }
        })
    }

    fn changes(&self, out: &mut Vec<Change>) {
        if let Some(Ok(output)) = &self.result {
            self.write.changes(output, out);
        }
    }

    fn answer(self: Box<Self>, failure: Option<Error>, users: &UserCache) {
        let result = match failure {
            Some(e) => Err(e),
            None => self
                .result
                .unwrap_or_else(|| Err(Error::internal("a committed write was never applied"))),
        };
        if let Ok(output) = &result {
            self.write.committed(output, users);
        }
        let _ = self.reply.send(result);
    }
}

/// Counters of the writer's work: `writes / commits` is the mean batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes acknowledged.
    pub writes: u64,
    /// Of those, writes applied together with others of their kind in one
    /// statement (PostgreSQL; see `Write::apply_together`).
    pub grouped: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
    grouped: AtomicU64,
}

pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    /// Answered when the writer has stopped (its connection closed).
    stopped: tokio::sync::Mutex<Option<oneshot::Receiver<()>>>,
    counters: Arc<Counters>,
}

/// Where the writer's transactions run.
pub(super) enum Engine {
    /// PostgreSQL: a connection of the writer's own, opened on its thread
    /// (its socket then wakes that thread, not the server's runtime) and
    /// kept from batch to batch.
    Postgres {
        url: String,
        held: Option<sqlx::AnyConnection>,
        /// A transaction is open on `held`: the last COMMIT began the next
        /// one in the same round trip (see `pg_attempt`).
        open: bool,
    },
    /// One rusqlite connection to this file, opened at the first write, on
    /// the writer's own thread (see `exec`).
    Sqlite {
        path: std::path::PathBuf,
        connection: Option<rusqlite::Connection>,
    },
}

impl Engine {
    /// The SQLite writer's connection, opened with the pool's settings: WAL
    /// lets reads run beside the writer; FULL makes each commit survive a
    /// power cut. Its page cache is 16 MB (SQLite's default is 2 MB): a
    /// large transaction (an import's batch of random ids) otherwise
    /// spills dirty pages and reads index pages back from the OS at every
    /// step; statement journals stay in memory (`temp_store`).
    fn sqlite_connection<'c>(
        path: &std::path::Path,
        connection: &'c mut Option<rusqlite::Connection>,
    ) -> Result<&'c mut rusqlite::Connection> {
        if connection.is_none() {
            let opened = rusqlite::Connection::open(path)
                .and_then(|c| {
                    c.busy_timeout(std::time::Duration::from_secs(5))?;
                    c.execute_batch(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
                         PRAGMA cache_size = -16384; PRAGMA temp_store = MEMORY;",
                    )?;
                    c.set_prepared_statement_cache_capacity(64);
                    Ok(c)
                })
                .map_err(|e| Error::internal_from("database: open the writer's connection", e))?;
            *connection = Some(opened);
        }
        connection
            .as_mut()
            .ok_or_else(|| Error::internal("database: the writer has no connection"))
    }
}

impl Writer {
    /// The writer is a thread of its own, with a one-thread runtime and
    /// its own connection: a batch runs from BEGIN to COMMIT without
    /// waiting behind the server's request tasks or for another thread
    /// (on SQLite every statement runs inline; on PostgreSQL its socket
    /// wakes this thread directly).
    pub(super) fn spawn(engine: Engine, users: Arc<UserCache>, feed: ChangeFeed) -> Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let (done, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal_from("the store writer's runtime", e))?;
        let work = {
            let counters = counters.clone();
            async move {
                run(engine, rx, counters, users, feed).await;
                let _ = done.send(());
            }
        };
        std::thread::Builder::new()
            .name("wxauth-writer".into())
            .spawn(move || runtime.block_on(work))
            .map_err(|e| Error::internal_from("the store writer's thread", e))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            stopped: tokio::sync::Mutex::new(Some(stopped)),
            counters,
        })
    }

    /// Queues `write` and waits until the batch holding it is committed.
    pub(super) async fn submit<W: Write>(&self, write: W) -> Result<W::Output> {
        let sender = self
            .tx
            .lock()
            .map_err(|_| Error::internal("the store writer's lock is poisoned"))?
            .clone()
            .ok_or_else(|| Error::internal("the store is closed"))?;
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending {
            write,
            result: None,
            reply,
        });
        sender
            .send(job)
            .await
            .map_err(|_| Error::internal("the store writer stopped"))?;
        answer
            .await
            .map_err(|_| Error::internal("the store writer dropped a write"))?
    }

    pub(super) fn stats(&self) -> WriterStats {
        WriterStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            grouped: self.counters.grouped.load(Ordering::Relaxed),
        }
    }

    pub(super) async fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(stopped) = self.stopped.lock().await.take() {
            let _ = stopped.await;
        }
    }
}

async fn run(
    mut engine: Engine,
    mut rx: mpsc::Receiver<Box<dyn Job>>,
    counters: Arc<Counters>,
    users: Arc<UserCache>,
    feed: ChangeFeed,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        if let Err(e) = commit_batch(&mut engine, &rx, batch, &users, &counters, &feed).await {
            tracing::error!(
                error = e.internal_chain().unwrap_or_else(|| e.to_string()),
                writes = n,
                "group commit failed; every write in it was refused"
            )
        }
    }
}

/// How often a batch that lost to a concurrent transaction (another
/// instance's group commit: a deadlock or serialization failure) is run
/// again from the start before its writes are refused.
const CONTENTION_RETRIES: u32 = 8;

/// What an attempt at a batch came to.
enum Attempt {
    /// Committed; each job holds its own result. How many of the writes
    /// were applied in groups, and the change log's last positions.
    Committed {
        grouped: u64,
        positions: Vec<CommittedPosition>,
    },
    /// A write failed without savepoints: nothing committed, run again
    /// with a savepoint around each write.
    NeedsSavepoints,
    /// Lost to a concurrent transaction: nothing committed.
    Contention(Error),
    /// The transaction itself failed: nothing committed.
    Failed(Error),
}

/// Commits a batch. The first attempt applies every write directly; only if
/// one of them fails is the transaction rolled back and the batch applied
/// again with a savepoint around each write, so the failure stays its own.
/// Most batches have no failure and pay no savepoint statements.
///
/// A batch that meets a deadlock or serialization failure (several
/// instances' batches locking the same rows in other orders) is rolled back
/// whole and run again after a short random pause, up to
/// `CONTENTION_RETRIES` times: nothing of it was committed, so running it
/// again is safe, and the caller never sees the conflict.
async fn commit_batch(
    engine: &mut Engine,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    mut batch: Vec<Box<dyn Job>>,
    users: &UserCache,
    counters: &Counters,
    feed: &ChangeFeed,
) -> Result<()> {
    let mut retries = 0;
    let outcome = loop {
        let log = feed.logging();
        let mut outcome = attempt(engine, &mut batch, false, queue, log).await;
        if matches!(outcome, Attempt::NeedsSavepoints) {
            outcome = attempt(engine, &mut batch, true, queue, log).await;
        }
        match outcome {
            Attempt::Contention(e) if retries < CONTENTION_RETRIES => {
                retries += 1;
                metrics::counter!("wxauth_store_contention_retries_total").increment(1);
                tracing::debug!(
                    retries,
                    writes = batch.len(),
                    cause = %e,
                    "write batch lost to a concurrent transaction; running it again"
                );
                let pause = rand::random_range(1..=10u64 * u64::from(retries));
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
            }
            other => break other,
        }
    };
    let failure = match outcome {
        Attempt::Committed { grouped, positions } => {
            counters.grouped.fetch_add(grouped, Ordering::Relaxed);
            metrics::counter!("wxauth_store_grouped_writes_total").increment(grouped);
            feed.committed(positions);
            None
        }
        Attempt::Contention(e) | Attempt::Failed(e) => Some(e),
        Attempt::NeedsSavepoints => Some(Error::internal(
            "a write failed even with savepoints around each write",
        )),
    };
    match failure {
        None => {
            // Counted before anyone hears of it: a caller reading the
            // counters after its answer sees its own write.
            let n = batch.len() as u64;
            counters.commits.fetch_add(1, Ordering::Relaxed);
            counters.writes.fetch_add(n, Ordering::Relaxed);
            metrics::counter!("wxauth_store_commits_total").increment(1);
            metrics::counter!("wxauth_store_writes_total").increment(n);
            for job in batch {
                job.answer(None, users);
            }
            Ok(())
        }
        Some(e) => {
            for job in batch {
                job.answer(Some(share(&e)), users);
            }
            Err(e)
        }
    }
}

/// The same failure for every caller of a batch.
fn share(e: &Error) -> Error {
    match e {
        Error::Contention(cause) => Error::Contention(cause.clone()),
        Error::Internal(cause) => Error::Internal(cause.clone()),
        other => Error::internal(other.to_string()),
    }
}

/// One transaction over the batch. Without savepoints, the first failing
/// write aborts the attempt (`NeedsSavepoints`). A write that lost to a
/// concurrent transaction aborts the attempt in either mode.
async fn attempt(
    engine: &mut Engine,
    batch: &mut [Box<dyn Job>],
    savepoints: bool,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    log: bool,
) -> Attempt {
    match engine {
        Engine::Postgres { url, held, open } => {
            if held.is_none() {
                *open = false;
                // The pool's acquire timeout, for a server that does not answer.
                let connect = <sqlx::AnyConnection as sqlx::Connection>::connect(url);
                match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
                    Ok(Ok(mut conn)) => {
                        // The writer runs a handful of statements, all by
                        // primary or unique key: one plan each, made once,
                        // instead of planning every execution anew
                        // (PostgreSQL 12 and later; older ones keep their
                        // default).
                        if let Err(e) = sqlx::Executor::execute(
                            &mut conn,
                            "SET plan_cache_mode = force_generic_plan",
                        )
                        .await
                        {
                            tracing::debug!(error = %e, "plan_cache_mode not set");
                        }
                        *held = Some(conn);
                    }
                    Ok(Err(e)) => {
                        return Attempt::Failed(Error::internal_from("database: connect", e));
                    }
                    Err(_) => {
                        return Attempt::Failed(Error::internal(
                            "database: connect: no answer within 5 s",
                        ));
                    }
                }
            }
            let Some(conn) = held.as_mut() else {
                return Attempt::Failed(Error::internal("database: the writer has no connection"));
            };
            let outcome = pg_attempt(conn, open, batch, savepoints, queue, log).await;
            if matches!(outcome, Attempt::Failed(_)) {
                // Perhaps the connection broke: the next batch opens another.
                held.take();
                *open = false;
            }
            outcome
        }
        Engine::Sqlite { path, connection } => {
            let conn = match Engine::sqlite_connection(path, connection) {
                Ok(conn) => conn,
                Err(e) => return Attempt::Failed(e),
            };
            // IMMEDIATE: a transaction that reads first and writes later
            // cannot wait for another process's write lock, it fails at once.
            if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                return Attempt::Failed(Error::internal_from("database: begin", e));
            }
            let mut tx = SqliteTx(conn);
            let applied = match apply_all(&mut tx, batch, savepoints).await {
                Ok(grouped) => record_changes(&mut tx, changes_of(batch, log))
                    .await
                    .map(|positions| (grouped, positions)),
                Err(stopped) => Err(stopped),
            };
            let outcome = match applied {
                Ok((grouped, positions)) => match tx.0.execute_batch("COMMIT") {
                    Ok(()) => return Attempt::Committed { grouped, positions },
                    Err(e) => Attempt::Failed(Error::internal_from("database: commit", e)),
                },
                Err(stopped) => stopped,
            };
            if !tx.0.is_autocommit()
                && let Err(e) = tx.0.execute_batch("ROLLBACK")
            {
                // A connection that cannot roll back is opened afresh.
                tracing::error!(error = %e, "the store writer's rollback failed; reconnecting");
                *connection = None;
            }
            outcome
        }
    }
}

/// One attempt on PostgreSQL. BEGIN and COMMIT are the writer's own
/// statements: when more writes are already queued, the COMMIT also begins
/// the next batch's transaction ("COMMIT; BEGIN", one round trip instead of
/// two; each costs 0.5 ms or more on a busy 2-core machine, against 1.6 ms
/// for the statement of a group of 15 creates). With nothing queued the
/// connection is left outside any transaction, never idle inside one.
async fn pg_attempt(
    conn: &mut sqlx::AnyConnection,
    open: &mut bool,
    batch: &mut [Box<dyn Job>],
    savepoints: bool,
    queue: &mpsc::Receiver<Box<dyn Job>>,
    log: bool,
) -> Attempt {
    use sqlx::Executor as _;
    if !*open {
        if let Err(e) = conn.execute(sqlx::raw_sql("BEGIN")).await {
            return Attempt::Failed(Error::internal_from("database: begin", e));
        }
        *open = true;
    }
    let mut tx = SqlxTx(&mut *conn, super::exec::Logged::new(log));
    let applied = match apply_all(&mut tx, batch, savepoints).await {
        Ok(grouped) => record_changes(&mut tx, changes_of(batch, log))
            .await
            .map(|positions| (grouped, positions)),
        Err(stopped) => Err(stopped),
    };
    let (grouped, positions) = match applied {
        Ok(done) => done,
        Err(stopped) => {
            *open = false;
            if let Err(e) = conn.execute(sqlx::raw_sql("ROLLBACK")).await {
                return Attempt::Failed(Error::internal_from("database: rollback", e));
            }
            return stopped;
        }
    };
    let chain = !queue.is_empty();
    let commit = if chain { "COMMIT; BEGIN" } else { "COMMIT" };
    // A COMMIT that fails ends the transaction (and skips the BEGIN after it).
    *open = false;
    match conn
        .execute(sqlx::raw_sql(commit))
        .await
        .map_err(Error::from)
    {
        Ok(_) => {
            *open = chain;
            Attempt::Committed { grouped, positions }
        }
        Err(Error::Contention(cause)) => Attempt::Contention(Error::Contention(cause)),
        Err(e) => Attempt::Failed(e),
    }
}

/// The changes the batch's writes made to documents (none when the
/// change log is off).
fn changes_of(batch: &[Box<dyn Job>], log: bool) -> Vec<Change> {
    let mut found = Vec::new();
    if !log {
        return found;
    }
    for job in batch {
        job.changes(&mut found);
    }
    found
}

/// Records the changes the batch's writes made to documents (see
/// `changes::record`), as the last statements before the commit: the
/// positions' rows stay locked for as short a time as possible. Changes a
/// write's statement logged itself are left out; if the others would lock
/// a collection's positions before one already locked (out of key order,
/// where two instances could wait on each other), the batch runs again
/// without groups.
async fn record_changes(
    tx: &mut Tx<'_>,
    found: Vec<Change>,
) -> Result<Vec<CommittedPosition>, Attempt> {
    let logged = tx.logged().map(std::mem::take).unwrap_or_default();
    let rest: Vec<Change> = found
        .into_iter()
        .filter(|c| !(c.op == changes::ChangeOp::Create && logged.docs.contains(&c.doc_id)))
        .collect();
    if let Some(locked) = logged.positions.keys().next_back() {
        let out_of_order = rest.iter().any(|c| {
            let key = (c.appid.clone(), c.collection.clone());
            !logged.positions.contains_key(&key) && &key < locked
        });
        if out_of_order {
            return Err(Attempt::NeedsSavepoints);
        }
    }
    let mut positions = if rest.is_empty() {
        Vec::new()
    } else {
        changes::record(tx, rest, changes::committed_now())
            .await
            .map_err(|e| match e {
                Error::Contention(cause) => Attempt::Contention(Error::Contention(cause)),
                e => Attempt::Failed(e),
            })?
    };
    for ((appid, collection), position) in logged.positions {
        match positions
            .iter_mut()
            .find(|p| p.appid == appid && p.collection == collection)
        {
            Some(p) => p.position = p.position.max(position),
            None => positions.push(CommittedPosition {
                appid,
                collection,
                position,
            }),
        }
    }
    Ok(positions)
}

/// Applies every write of the batch in `tx` (how many of them in groups);
/// the attempt it came to if it must stop (the transaction is then rolled
/// back).
async fn apply_all(
    tx: &mut Tx<'_>,
    batch: &mut [Box<dyn Job>],
    savepoints: bool,
) -> Result<u64, Attempt> {
    let mut done = vec![false; batch.len()];
    if !savepoints && tx.chains_writes() {
        apply_groups(tx, batch, &mut done).await?;
    }
    let grouped = done.iter().filter(|d| **d).count() as u64;
    for (job, done) in batch.iter_mut().zip(done) {
        if done {
            continue;
        }
        let applied = if savepoints {
            match apply_in_savepoint(tx, job.as_mut()).await {
                Ok(applied) => applied,
                Err(e) => return Err(Attempt::Failed(e)),
            }
        } else {
            job.apply(tx).await
        };
        match applied {
            Applied::Done => {}
            Applied::Contention(e) => return Err(Attempt::Contention(e)),
            Applied::Failed if savepoints => {}
            Applied::Failed => return Err(Attempt::NeedsSavepoints),
        }
    }
    Ok(grouped)
}

/// PostgreSQL: writes of a kind that can be applied together, two or more
/// in the batch, go as one group each; `done` marks the writes a group
/// applied.
async fn apply_groups(
    tx: &mut Tx<'_>,
    batch: &mut [Box<dyn Job>],
    done: &mut [bool],
) -> Result<(), Attempt> {
    let mut seen: Vec<TypeId> = Vec::new();
    for i in 0..batch.len() {
        let Some(kind) = batch[i].together() else {
            continue;
        };
        if seen.contains(&kind) {
            continue;
        }
        seen.push(kind);
        let (head, rest) = batch.split_at_mut(i + 1);
        let mut members = vec![i];
        let mut others = Vec::new();
        for (j, job) in rest.iter_mut().enumerate() {
            if job.together() == Some(kind) {
                members.push(i + 1 + j);
                others.push(job);
            }
        }
        if others.is_empty() {
            continue;
        }
        match head[i].apply_with(others, tx).await {
            Grouped::Applied(applied) => {
                for (at, applied) in members.into_iter().zip(applied) {
                    done[at] = applied;
                }
            }
            Grouped::Failed => return Err(Attempt::NeedsSavepoints),
            Grouped::Contention(e) => return Err(Attempt::Contention(e)),
        }
    }
    Ok(())
}

async fn apply_in_savepoint(tx: &mut Tx<'_>, job: &mut dyn Job) -> Result<Applied> {
    query("SAVEPOINT w").execute(tx).await?;
    let applied = job.apply(tx).await;
    if matches!(applied, Applied::Failed) {
        query("ROLLBACK TO SAVEPOINT w").execute(tx).await?;
    }
    if !matches!(applied, Applied::Contention(_)) {
        query("RELEASE SAVEPOINT w").execute(tx).await?;
    }
    Ok(applied)
}
