//! PostgreSQL: reads of one row by key (a document, a user) that arrive
//! together go to the database as one query.
//!
//! On PostgreSQL every read is a round trip to another process, and on a
//! small machine most of a read's cost is that trip (two context switches
//! and four socket operations), not the index lookup: a profile of
//! `GET /v1/data/{collection}/{id}` under load showed PostgreSQL's
//! backends spending more time switching than executing. So a read made
//! while others are under way is queued, and a few lanes (tasks on the
//! server's runtime) each take whatever is queued when they are free and
//! fetch it with one statement by primary key, the way the writer groups
//! commits. The only read under way goes straight to the database: a
//! hand-off to a lane would only add to its time. Each answer is checked
//! against what its own lookup asked (a document's user, app and
//! collection), so a lookup never sees a row that the same query fetched
//! for someone else.
//!
//! A lookup made after a write was acknowledged is queued after it too, so
//! it sees that write. When the lanes are gone (the runtime that started
//! them has stopped) or a grouped query fails, each lookup is run alone,
//! so its error is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::rows::{COLUMNS, DocumentRecord, USER_COLUMNS, UserRecord};
use crate::error::{Error, Result};
use crate::vocab::query::Scope;

/// Lanes: groups fetched at once. Two cores' worth of PostgreSQL backends
/// and then some (one lane waits on its round trip while another fills).
const LANES: usize = 4;
/// Most lookups in one query.
const MOST_AT_ONCE: usize = 32;

/// A kind of row read by key, alone or in a group.
pub(super) trait ReadKind: Send + Sync + 'static {
    /// What one lookup asks for.
    type Key: Clone + Send + Sync + 'static;
    /// What it finds.
    type Record: Send + 'static;
    /// Names the kind in `wxauth_store_grouped_reads_total`.
    const NAME: &'static str;
    /// One lookup by itself.
    fn alone<'a>(
        pool: &'a AnyPool,
        key: &'a Self::Key,
    ) -> BoxFuture<'a, Result<Option<Self::Record>>>;
    /// Several in one statement: one answer per key, in their order.
    fn together<'a>(
        pool: &'a AnyPool,
        keys: &'a [&'a Self::Key],
    ) -> BoxFuture<'a, Result<Vec<Option<Self::Record>>>>;
}

type Answer<K> = Result<Option<<K as ReadKind>::Record>>;

struct Lookup<K: ReadKind> {
    key: K::Key,
    reply: oneshot::Sender<Answer<K>>,
}

/// The queue of one kind's lookups and the lanes that answer it.
pub(super) struct GroupedReads<K: ReadKind> {
    pool: AnyPool,
    queue: mpsc::UnboundedSender<Lookup<K>>,
    /// Reads under way (alone or queued).
    in_flight: AtomicUsize,
    grouped: Arc<AtomicU64>,
}

/// Counts a read as under way until dropped (also when the read is).
struct UnderWay<'a>(&'a AtomicUsize);

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<K: ReadKind> GroupedReads<K> {
    /// Starts the lanes on the current runtime; None outside one (reads
    /// are then made one by one).
    pub(super) fn start(pool: &AnyPool) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let grouped = Arc::new(AtomicU64::new(0));
        for _ in 0..LANES {
            runtime.spawn(lane::<K>(pool.clone(), waiting.clone(), grouped.clone()));
        }
        Some(Self {
            pool: pool.clone(),
            queue,
            in_flight: AtomicUsize::new(0),
            grouped,
        })
    }

    /// The row for `key`: alone when no other read is under way, else by
    /// a lane (alone again if the lanes are gone).
    pub(super) async fn read(&self, key: &K::Key) -> Answer<K> {
        let others = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _under_way = UnderWay(&self.in_flight);
        if others > 0 {
            let (reply, answer) = oneshot::channel();
            let queued = self.queue.send(Lookup {
                key: key.clone(),
                reply,
            });
            if queued.is_ok()
                && let Ok(answer) = answer.await
            {
                return answer;
            }
        }
        K::alone(&self.pool, key).await
    }

    /// Lookups answered by a query that answered others too.
    pub(super) fn grouped(&self) -> u64 {
        self.grouped.load(Ordering::Relaxed)
    }
}

/// Takes what is queued (waiting for the first one), answers it, repeats;
/// ends when the store is gone.
async fn lane<K: ReadKind>(
    pool: AnyPool,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Lookup<K>>>>,
    grouped: Arc<AtomicU64>,
) {
    loop {
        let lookups = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut lookups = vec![first];
            while lookups.len() < MOST_AT_ONCE {
                match waiting.try_recv() {
                    Ok(more) => lookups.push(more),
                    Err(_) => break,
                }
            }
            lookups
        };
        if lookups.len() > 1 {
            grouped.fetch_add(lookups.len() as u64, Ordering::Relaxed);
            metrics::counter!("wxauth_store_grouped_reads_total", "kind" => K::NAME)
                .increment(lookups.len() as u64);
        }
        answer::<K>(&pool, lookups).await;
    }
}

async fn answer<K: ReadKind>(pool: &AnyPool, lookups: Vec<Lookup<K>>) {
    if lookups.len() > 1 {
        let keys: Vec<&K::Key> = lookups.iter().map(|l| &l.key).collect();
        let found = K::together(pool, &keys).await;
        if let Ok(found) = found
            && found.len() == lookups.len()
        {
            for (lookup, record) in lookups.into_iter().zip(found) {
                let _ = lookup.reply.send(Ok(record));
            }
            return;
        }
    }
    for lookup in lookups {
        if lookup.reply.is_closed() {
            continue;
        }
        let found = K::alone(pool, &lookup.key).await;
        let _ = lookup.reply.send(found);
    }
}

/// The ids as one JSON text parameter (sqlx's Any driver binds no arrays).
fn id_list<'k>(ids: impl Iterator<Item = &'k str>) -> Result<String> {
    serde_json::to_string(&ids.collect::<Vec<_>>()).map_err(Error::internal)
}

/// Rows whose primary key `id` is one of `$1` (a JSON array of text).
const ANY_ID: &str = "id = ANY (ARRAY(SELECT json_array_elements_text($1::json)))";

/// A document by id within a scope (a user's, or an app's shared
/// collection).
pub(super) struct DocumentRead;

impl ReadKind for DocumentRead {
    type Key = (Scope, String);
    type Record = DocumentRecord;
    const NAME: &'static str = "document";

    fn alone<'a>(
        pool: &'a AnyPool,
        (scope, id): &'a Self::Key,
    ) -> BoxFuture<'a, Result<Option<DocumentRecord>>> {
        Box::pin(document_alone(pool, scope, id))
    }

    fn together<'a>(
        pool: &'a AnyPool,
        keys: &'a [&'a Self::Key],
    ) -> BoxFuture<'a, Result<Vec<Option<DocumentRecord>>>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {COLUMNS}, appid FROM documents WHERE {ANY_ID}"
            ))
            .bind(id_list(keys.iter().map(|(_, id)| id.as_str()))?)
            .fetch_all(pool)
            .await?;
            let found = rows
                .iter()
                .map(|row| {
                    let appid: Option<String> = sqlx::Row::try_get(row, "appid")?;
                    Ok((DocumentRecord::from_row(row)?, appid))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(keys
                .iter()
                .map(|(scope, id)| {
                    found
                        .iter()
                        .find(|(r, appid)| r.id == *id && in_scope(r, appid.as_deref(), scope))
                        .map(|(r, _)| r.clone())
                })
                .collect())
        })
    }
}

/// Whether a document belongs to the scope it was asked for.
fn in_scope(record: &DocumentRecord, appid: Option<&str>, scope: &Scope) -> bool {
    match scope {
        Scope::Owner {
            user_id,
            collection,
        } => record.owner == *user_id && record.collection == *collection,
        Scope::App {
            appid: wanted,
            collection,
        } => appid == Some(wanted.as_str()) && record.collection == *collection,
    }
}

/// One document in a scope, by itself.
pub(super) async fn document_alone(
    pool: &AnyPool,
    scope: &Scope,
    id: &str,
) -> Result<Option<DocumentRecord>> {
    let (column, who, collection) = scope.parts();
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE id = $1 AND {column} = $2 AND collection = $3"
    ))
    .bind(id)
    .bind(who)
    .bind(collection)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(DocumentRecord::from_row).transpose()
}

/// A user by id.
pub(super) struct UserRead;

impl ReadKind for UserRead {
    type Key = String;
    type Record = UserRecord;
    const NAME: &'static str = "user";

    fn alone<'a>(pool: &'a AnyPool, id: &'a String) -> BoxFuture<'a, Result<Option<UserRecord>>> {
        Box::pin(user_alone(pool, id))
    }

    fn together<'a>(
        pool: &'a AnyPool,
        ids: &'a [&'a String],
    ) -> BoxFuture<'a, Result<Vec<Option<UserRecord>>>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE {ANY_ID}"))
                .bind(id_list(ids.iter().map(|id| id.as_str()))?)
                .fetch_all(pool)
                .await?;
            let found = rows
                .iter()
                .map(UserRecord::from_row)
                .collect::<Result<Vec<_>>>()?;
            Ok(ids
                .iter()
                .map(|id| found.iter().find(|u| u.id == **id).cloned())
                .collect())
        })
    }
}

/// One user by id, by itself.
pub(super) async fn user_alone(pool: &AnyPool, id: &str) -> Result<Option<UserRecord>> {
    let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(UserRecord::from_row).transpose()
}
