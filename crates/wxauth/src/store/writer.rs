//! Group commit: one task owns all writes. It waits for a first write, takes
//! every other write already queued (up to `MAX_BATCH`), applies each in its
//! own savepoint inside one transaction, commits once, and only then answers
//! every caller. With 64 concurrent writers that is one fsync for up to 64
//! writes instead of 64 fsyncs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::{Any, AnyPool, Row, Transaction};
use tokio::sync::{Mutex, mpsc, oneshot};

use super::documents::{self, CreateOutcome, NewDocument, ReplaceOutcome, UserQuota};
use super::records::{LoginWrite, RefreshOutcome, USER_COLUMNS, UserRecord};
use crate::error::{Error, Result};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

pub(super) enum Op {
    Login(LoginWrite),
    NewSession {
        user_id: String,
        appid: String,
        session_id: String,
        refresh_hash: Vec<u8>,
        refresh_expires_at: i64,
        now: i64,
    },
    RotateRefresh {
        old_hash: Vec<u8>,
        new_hash: Vec<u8>,
        new_expires_at: i64,
        now: i64,
    },
    RevokeSession {
        session_id: String,
        reason: &'static str,
        now: i64,
    },
    ModifyProfile {
        user_id: String,
        modify: ProfileChange,
    },
    SetPhone {
        user_id: String,
        phone_enc: Vec<u8>,
    },
    CreateDocument(NewDocument),
    ReplaceDocument {
        user_id: String,
        collection: String,
        id: String,
        data: String,
        if_version: Option<i64>,
        now: i64,
        quota: UserQuota,
    },
    DeleteDocument {
        user_id: String,
        collection: String,
        id: String,
    },
    ExpireIdempotencyKeys {
        before: i64,
    },
}

/// A change to a profile, computed from the current one inside the write
/// transaction (so concurrent changes never overwrite each other).
pub type ProfileChange = Box<dyn Fn(&str) -> Result<String> + Send + Sync>;

pub(super) enum Outcome {
    Login(UserRecord, bool),
    User(Option<UserRecord>),
    Created(CreateOutcome),
    Replaced(ReplaceOutcome),
    Count(u64),
    Refresh(RefreshOutcome),
    Bool(bool),
    Unit,
}

fn mismatch() -> Error {
    Error::internal("store writer answered with the wrong outcome kind")
}

impl Outcome {
    pub(super) fn into_login(self) -> Result<(UserRecord, bool)> {
        match self {
            Outcome::Login(u, n) => Ok((u, n)),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_refresh(self) -> Result<RefreshOutcome> {
        match self {
            Outcome::Refresh(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_user(self) -> Result<Option<UserRecord>> {
        match self {
            Outcome::User(u) => Ok(u),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_created(self) -> Result<CreateOutcome> {
        match self {
            Outcome::Created(c) => Ok(c),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_replaced(self) -> Result<ReplaceOutcome> {
        match self {
            Outcome::Replaced(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_count(self) -> Result<u64> {
        match self {
            Outcome::Count(n) => Ok(n),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_bool(self) -> Result<bool> {
        match self {
            Outcome::Bool(b) => Ok(b),
            _ => Err(mismatch()),
        }
    }
    pub(super) fn into_unit(self) -> Result<()> {
        match self {
            Outcome::Unit => Ok(()),
            _ => Err(mismatch()),
        }
    }
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Counters of the writer's work: `writes / commits` is the mean batch size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: u64,
    /// Writes acknowledged.
    pub writes: u64,
}

#[derive(Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

pub(super) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// `begin` is the statement that opens each write transaction (SQLite
    /// needs `BEGIN IMMEDIATE`: a transaction that reads first and writes
    /// later cannot wait for another process's write lock, it fails at once).
    pub(super) fn spawn(pool: AnyPool, begin: Option<&'static str>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(pool, begin, rx, counters.clone()));
        Self {
            tx: Mutex::new(Some(tx)),
            task: Mutex::new(Some(task)),
            counters,
        }
    }

    pub(super) async fn submit(&self, op: Op) -> Result<Outcome> {
        let sender = self
            .tx
            .lock()
            .await
            .clone()
            .ok_or_else(|| Error::internal("the store is closed"))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { op, reply })
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
        }
    }

    pub(super) async fn close(&self) {
        self.tx.lock().await.take();
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

async fn run(
    pool: AnyPool,
    begin: Option<&'static str>,
    mut rx: mpsc::Receiver<Job>,
    counters: Arc<Counters>,
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
        match commit_batch(&pool, begin, batch).await {
            Ok(()) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.writes.fetch_add(n, Ordering::Relaxed);
                metrics::counter!("wxauth_store_commits_total").increment(1);
                metrics::counter!("wxauth_store_writes_total").increment(n);
            }
            Err(e) => {
                tracing::error!(error = %e, writes = n, "group commit failed; every write in it was refused")
            }
        }
    }
}

/// How often a batch that lost to a concurrent transaction (another
/// instance's group commit: a deadlock or serialization failure) is run
/// again from the start before its writes are refused.
const CONTENTION_RETRIES: u32 = 8;

fn is_contention<T>(result: &Result<Vec<Result<T>>>) -> bool {
    match result {
        Err(Error::Contention(_)) => true,
        Ok(results) => results
            .iter()
            .any(|r| matches!(r, Err(Error::Contention(_)))),
        Err(_) => false,
    }
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
async fn commit_batch(pool: &AnyPool, begin: Option<&'static str>, batch: Vec<Job>) -> Result<()> {
    let (ops, replies): (Vec<Op>, Vec<_>) = batch.into_iter().map(|j| (j.op, j.reply)).unzip();
    let mut retries = 0;
    let result = loop {
        let mut result = attempt(pool, begin, &ops, false).await;
        if !is_contention(&result)
            && matches!(&result, Ok(results) if results.iter().any(Result::is_err))
        {
            result = attempt(pool, begin, &ops, true).await;
        }
        if !is_contention(&result) || retries == CONTENTION_RETRIES {
            break result;
        }
        retries += 1;
        metrics::counter!("wxauth_store_contention_retries_total").increment(1);
        tracing::debug!(
            retries,
            writes = ops.len(),
            "write batch lost to a concurrent transaction; running it again"
        );
        let pause = rand::random_range(1..=10u64 * u64::from(retries));
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
    };
    match result {
        Ok(results) => {
            for (reply, r) in replies.into_iter().zip(results) {
                let _ = reply.send(r);
            }
            Ok(())
        }
        Err(e) => {
            let contention = matches!(e, Error::Contention(_));
            let msg = e.to_string();
            for reply in replies {
                let _ = reply.send(Err(if contention {
                    Error::Contention(msg.clone())
                } else {
                    Error::Internal(msg.clone())
                }));
            }
            Err(e)
        }
    }
}

/// One transaction over the batch. `Err` means nothing was committed;
/// `Ok` holds each write's own result (all committed together). Without
/// savepoints, the first failing write aborts the attempt: its results are
/// returned uncommitted so the caller retries with savepoints. A write that
/// lost to a concurrent transaction aborts the attempt in either mode
/// (`Err(Contention)`): the whole batch is then run again.
async fn attempt(
    pool: &AnyPool,
    begin: Option<&'static str>,
    ops: &[Op],
    savepoints: bool,
) -> Result<Vec<Result<Outcome>>> {
    let tx = match begin {
        Some(statement) => pool.begin_with(statement).await,
        None => pool.begin().await,
    };
    let mut tx = tx.map_err(|e| Error::Internal(format!("database: {e}")))?;
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = if savepoints {
            apply_in_savepoint(&mut tx, op).await
        } else {
            apply(&mut tx, op).await
        };
        if let Err(Error::Contention(cause)) = result {
            let _ = tx.rollback().await;
            return Err(Error::Contention(cause));
        }
        let failed = result.is_err();
        results.push(result);
        if failed && !savepoints {
            let _ = tx.rollback().await;
            return Ok(results);
        }
    }
    tx.commit().await.map_err(|e| match Error::from(e) {
        Error::Contention(cause) => Error::Contention(cause),
        other => other,
    })?;
    Ok(results)
}

async fn apply_in_savepoint(tx: &mut Transaction<'static, Any>, op: &Op) -> Result<Outcome> {
    sqlx::query("SAVEPOINT w").execute(&mut **tx).await?;
    match apply(tx, op).await {
        Ok(outcome) => {
            sqlx::query("RELEASE SAVEPOINT w")
                .execute(&mut **tx)
                .await?;
            Ok(outcome)
        }
        Err(e) => {
            sqlx::query("ROLLBACK TO SAVEPOINT w")
                .execute(&mut **tx)
                .await?;
            sqlx::query("RELEASE SAVEPOINT w")
                .execute(&mut **tx)
                .await?;
            Err(e)
        }
    }
}

async fn insert_session(
    tx: &mut Transaction<'static, Any>,
    session_id: &str,
    user_id: &str,
    appid: &str,
    refresh_hash: &[u8],
    refresh_expires_at: i64,
    now: i64,
) -> Result<()> {
    sqlx::query("INSERT INTO sessions (id, user_id, appid, created_at) VALUES ($1, $2, $3, $4)")
        .bind(session_id)
        .bind(user_id)
        .bind(appid)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(refresh_hash.to_vec())
        .bind(session_id)
        .bind(now)
        .bind(refresh_expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn apply(tx: &mut Transaction<'static, Any>, op: &Op) -> Result<Outcome> {
    match op {
        Op::Login(w) => {
            let row = sqlx::query(&format!(
                "INSERT INTO users (id, appid, openid, unionid, session_key_enc, created_at, last_login_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (appid, openid) DO UPDATE SET \
                   unionid = COALESCE(excluded.unionid, users.unionid), \
                   session_key_enc = excluded.session_key_enc, \
                   last_login_at = excluded.last_login_at \
                 RETURNING {USER_COLUMNS}"
            ))
            .bind(&w.new_user_id)
            .bind(&w.appid)
            .bind(&w.openid)
            .bind(w.unionid.clone())
            .bind(w.session_key_enc.clone())
            .bind(w.now)
            .fetch_one(&mut **tx)
            .await?;
            let user = UserRecord::from_row(&row)?;
            let new_user = user.id == w.new_user_id;
            insert_session(
                tx,
                &w.session_id,
                &user.id,
                &w.appid,
                &w.refresh_hash,
                w.refresh_expires_at,
                w.now,
            )
            .await?;
            Ok(Outcome::Login(user, new_user))
        }
        Op::NewSession {
            user_id,
            appid,
            session_id,
            refresh_hash,
            refresh_expires_at,
            now,
        } => {
            sqlx::query("UPDATE users SET last_login_at = $1 WHERE id = $2")
                .bind(*now)
                .bind(user_id)
                .execute(&mut **tx)
                .await?;
            insert_session(
                tx,
                session_id,
                user_id,
                appid,
                refresh_hash,
                *refresh_expires_at,
                *now,
            )
            .await?;
            Ok(Outcome::Unit)
        }
        Op::RotateRefresh {
            old_hash,
            new_hash,
            new_expires_at,
            now,
        } => rotate(
            tx,
            old_hash.clone(),
            new_hash.clone(),
            *new_expires_at,
            *now,
        )
        .await
        .map(Outcome::Refresh),
        Op::RevokeSession {
            session_id,
            reason,
            now,
        } => {
            let done = sqlx::query(
                "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(*now)
            .bind(*reason)
            .bind(session_id)
            .execute(&mut **tx)
            .await?;
            Ok(Outcome::Bool(done.rows_affected() == 1))
        }
        Op::ModifyProfile { user_id, modify } => {
            // Read with the row locked (a no-op UPDATE, valid on both
            // databases): another instance's writer changing the same
            // profile waits, so neither merge is lost.
            let row = sqlx::query("UPDATE users SET profile_version = profile_version WHERE id = $1 RETURNING profile")
                .bind(user_id)
                .fetch_optional(&mut **tx)
                .await?;
            let Some(row) = row else {
                return Ok(Outcome::User(None));
            };
            let current: String = row.try_get("profile")?;
            let next = modify(&current)?;
            let row = sqlx::query(&format!(
                "UPDATE users SET profile = $1, profile_version = profile_version + 1 WHERE id = $2 RETURNING {USER_COLUMNS}"
            ))
            .bind(next)
            .bind(user_id)
            .fetch_one(&mut **tx)
            .await?;
            Ok(Outcome::User(Some(UserRecord::from_row(&row)?)))
        }
        Op::CreateDocument(doc) => documents::create(tx, doc).await.map(Outcome::Created),
        Op::ReplaceDocument {
            user_id,
            collection,
            id,
            data,
            if_version,
            now,
            quota,
        } => documents::replace(tx, user_id, collection, id, data, *if_version, *now, *quota)
            .await
            .map(Outcome::Replaced),
        Op::DeleteDocument {
            user_id,
            collection,
            id,
        } => documents::delete(tx, user_id, collection, id)
            .await
            .map(Outcome::Bool),
        Op::ExpireIdempotencyKeys { before } => documents::expire_idempotency_keys(tx, *before)
            .await
            .map(Outcome::Count),
        Op::SetPhone { user_id, phone_enc } => {
            let done = sqlx::query("UPDATE users SET phone_enc = $1 WHERE id = $2")
                .bind(phone_enc.clone())
                .bind(user_id)
                .execute(&mut **tx)
                .await?;
            Ok(Outcome::Bool(done.rows_affected() == 1))
        }
    }
}

/// Refresh-token rotation. The conditional UPDATE makes "spend this token"
/// atomic even with several instances on one PostgreSQL: of two requests
/// with the same token exactly one sees it unused.
async fn rotate(
    tx: &mut Transaction<'static, Any>,
    old_hash: Vec<u8>,
    new_hash: Vec<u8>,
    new_expires_at: i64,
    now: i64,
) -> Result<RefreshOutcome> {
    let spent = sqlx::query(
        "UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING session_id",
    )
    .bind(now)
    .bind(old_hash.clone())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(spent) = spent else {
        let known = sqlx::query("SELECT session_id, used_at FROM refresh_tokens WHERE hash = $1")
            .bind(old_hash)
            .fetch_optional(&mut **tx)
            .await?;
        let Some(known) = known else {
            return Ok(RefreshOutcome::Invalid);
        };
        let used_at: Option<i64> = known.try_get("used_at")?;
        if used_at.is_none() {
            return Ok(RefreshOutcome::Invalid); // expired, never used
        }
        let session_id: String = known.try_get("session_id")?;
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = 'refresh_token_reuse' WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(&session_id)
        .execute(&mut **tx)
        .await?;
        return Ok(RefreshOutcome::Reused { session_id });
    };
    let session_id: String = spent.try_get("session_id")?;
    let session = sqlx::query("SELECT user_id, appid, revoked_at FROM sessions WHERE id = $1")
        .bind(&session_id)
        .fetch_one(&mut **tx)
        .await?;
    let revoked_at: Option<i64> = session.try_get("revoked_at")?;
    if revoked_at.is_some() {
        return Ok(RefreshOutcome::Invalid);
    }
    sqlx::query("INSERT INTO refresh_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
        .bind(new_hash)
        .bind(&session_id)
        .bind(now)
        .bind(new_expires_at)
        .execute(&mut **tx)
        .await?;
    Ok(RefreshOutcome::Rotated {
        session_id,
        user_id: session.try_get("user_id")?,
        appid: session.try_get("appid")?,
    })
}
