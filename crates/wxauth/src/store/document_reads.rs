//! PostgreSQL: reads of single documents that arrive together go to the
//! database as one query.
//!
//! On PostgreSQL every read is a round trip to another process, and on a
//! small machine most of a read's cost is that trip (two context switches
//! and four socket operations), not the index lookup: a profile of
//! `GET /v1/data/{collection}/{id}` under load showed PostgreSQL's
//! backends spending more time switching than executing. So lookups queue
//! here (unless it is the only read under way) and a few lanes (tasks on the server's runtime) each take whatever
//! is queued when they are free and fetch it with one statement by primary
//! key, the way the writer groups commits: alone when the server is quiet
//! (no waiting for company), in groups under load. Each answer is checked
//! against its own scope, so a lookup never sees a document of another
//! user or app that the same query returned.
//!
//! A lookup made after a write was acknowledged is queued after it too, so
//! it sees that write. When the lanes are gone (the runtime that started
//! them has stopped) or a grouped query fails, each lookup is run alone,
//! so its error is its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sqlx::AnyPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::documents::{COLUMNS, DocumentRecord};
use super::query::Scope;
use crate::error::{Error, Result};

/// Lanes: groups fetched at once. Two cores' worth of PostgreSQL backends
/// and then some (one lane waits on its round trip while another fills).
const LANES: usize = 4;
/// Most lookups in one query.
const MOST_AT_ONCE: usize = 32;

type Answer = Result<Option<DocumentRecord>>;

struct Lookup {
    scope: Scope,
    id: String,
    reply: oneshot::Sender<Answer>,
}

/// The queue of single-document lookups and the lanes that answer it.
pub(super) struct DocumentReads {
    pool: AnyPool,
    queue: mpsc::UnboundedSender<Lookup>,
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

impl DocumentReads {
    /// Starts the lanes on the current runtime; None outside one (reads
    /// are then made one by one).
    pub(super) fn start(pool: &AnyPool) -> Option<Self> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        let grouped = Arc::new(AtomicU64::new(0));
        for _ in 0..LANES {
            runtime.spawn(lane(pool.clone(), waiting.clone(), grouped.clone()));
        }
        Some(Self {
            pool: pool.clone(),
            queue,
            in_flight: AtomicUsize::new(0),
            grouped,
        })
    }

    /// One document in a scope. The only read under way goes straight to
    /// the database (a hand-off to a lane would only add to its time);
    /// with others under way it is queued for a lane.
    pub(super) async fn read(&self, scope: &Scope, id: &str) -> Answer {
        let others = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _under_way = UnderWay(&self.in_flight);
        if others > 0 {
            if let Some(answer) = self.queued(scope, id).await {
                return answer;
            }
        }
        document_alone(&self.pool, scope, id).await
    }

    /// The lanes' answer, or None when they cannot take the lookup.
    async fn queued(&self, scope: &Scope, id: &str) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Lookup {
                scope: scope.clone(),
                id: id.to_owned(),
                reply,
            })
            .ok()?;
        answer.await.ok()
    }

    /// Lookups answered by a query that answered others too.
    pub(super) fn grouped(&self) -> u64 {
        self.grouped.load(Ordering::Relaxed)
    }
}

/// Takes what is queued (waiting for the first one), answers it, repeats;
/// ends when the store is gone.
async fn lane(
    pool: AnyPool,
    waiting: Arc<Mutex<mpsc::UnboundedReceiver<Lookup>>>,
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
            metrics::counter!("wxauth_store_grouped_reads_total").increment(lookups.len() as u64);
        }
        answer(&pool, lookups).await;
    }
}

async fn answer(pool: &AnyPool, lookups: Vec<Lookup>) {
    if lookups.len() > 1 {
        let ids: Vec<&str> = lookups.iter().map(|l| l.id.as_str()).collect();
        if let Ok(records) = documents_by_id(pool, &ids).await {
            for lookup in lookups {
                let found = records
                    .iter()
                    .find(|(r, appid)| {
                        r.id == lookup.id && in_scope(r, appid.as_deref(), &lookup.scope)
                    })
                    .map(|(r, _)| r.clone());
                let _ = lookup.reply.send(Ok(found));
            }
            return;
        }
    }
    for lookup in lookups {
        if lookup.reply.is_closed() {
            continue;
        }
        let found = document_alone(pool, &lookup.scope, &lookup.id).await;
        let _ = lookup.reply.send(found);
    }
}

/// Whether a row belongs to the scope it was asked for.
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

/// The documents with these ids (whoever's), each with its app.
async fn documents_by_id(
    pool: &AnyPool,
    ids: &[&str],
) -> Result<Vec<(DocumentRecord, Option<String>)>> {
    let ids = serde_json::to_string(ids).map_err(Error::internal)?;
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS}, appid FROM documents \
         WHERE id = ANY (ARRAY(SELECT json_array_elements_text($1::json)))"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let appid: Option<String> = sqlx::Row::try_get(row, "appid")?;
            Ok((DocumentRecord::from_row(row)?, appid))
        })
        .collect()
}

/// One document in a scope, by itself.
pub(super) async fn document_alone(pool: &AnyPool, scope: &Scope, id: &str) -> Answer {
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
