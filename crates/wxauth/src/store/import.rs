//! What an import from another platform writes (see `migrate`): users with
//! the map from their old ids, and documents in batches, each batch one
//! write of the group-commit writer (so one transaction).
//!
//! Both are safe to apply again: a user is found by (appid, openid) and a
//! document by its id, which the importer derives from the row's old id,
//! so a second run (or the rest of a killed one) adds only what is missing.

use std::collections::{HashMap, HashSet};

use futures_util::future::BoxFuture;
use sqlx::Row as _;

use super::Store;
use super::documents::size_of;
use super::exec::query;
use super::user_cache::UserCache;
use super::writer::{Tx, Write};
use crate::error::Result;
use crate::store::{UserLimit, UserQuota};

/// A user as another platform knew them.
#[derive(Clone)]
pub struct ImportedUser {
    /// The id to give them if no user of the app has their openid.
    pub new_id: String,
    /// The app.
    pub appid: String,
    /// Their openid in that app.
    pub openid: String,
    /// Their unionid, when known (kept on an existing user that has none).
    pub unionid: Option<String>,
    /// A sealed empty session_key: they have none until they log in.
    pub session_key_enc: Vec<u8>,
    /// Their profile, as JSON text (only for a user created here).
    pub profile: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds (their last activity there).
    pub last_login_at: i64,
    /// The platform (`leancloud`, `cloudbase`).
    pub platform: &'static str,
    /// Their id there (the key pointers and owners name them by).
    pub legacy_id: String,
}

impl std::fmt::Debug for ImportedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportedUser")
            .field("new_id", &self.new_id)
            .field("legacy_id", &self.legacy_id)
            .finish_non_exhaustive()
    }
}

/// What importing one user did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserImported {
    /// Their user id here.
    pub user_id: String,
    /// Whether this import created them (else they existed: logged in
    /// already, or imported by an earlier run).
    pub created: bool,
}

struct UserBatch(Vec<ImportedUser>);

impl Write for UserBatch {
    type Output = Vec<UserImported>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Vec<UserImported>>> {
        Box::pin(self.apply_batch(tx))
    }
    fn committed(&self, done: &Vec<UserImported>, users: &UserCache) {
        for d in done {
            users.forget(&d.user_id);
        }
    }
}

impl UserBatch {
    /// Three statements whatever the batch's size: which openids are
    /// users already, one upsert of the users, one of the map.
    async fn apply_batch(&self, tx: &mut Tx<'_>) -> Result<Vec<UserImported>> {
        let Some(first) = self.0.first() else {
            return Ok(Vec::new());
        };
        // One row per openid (a second row of the same openid is the
        // same user), and the batch is of one app.
        let mut seen = HashSet::new();
        let unique: Vec<&ImportedUser> = self
            .0
            .iter()
            .filter(|u| u.appid == first.appid && seen.insert(u.openid.as_str()))
            .collect();
        let existed: HashSet<String> = select_in(
            tx,
            "SELECT openid FROM users WHERE appid = $1 AND openid IN ({in})",
            vec![first.appid.clone().into()],
            unique.iter().map(|u| u.openid.clone().into()).collect(),
        )
        .await?
        .iter()
        .map(|r| r.try_get::<String>("openid"))
        .collect::<Result<_>>()?;
        // An existing user keeps everything but gains a unionid they
        // lacked; DO UPDATE (not NOTHING) so every row's id comes back.
        let rows = unique
            .iter()
            .map(|u| {
                vec![
                    u.new_id.clone().into(),
                    u.appid.clone().into(),
                    u.openid.clone().into(),
                    u.unionid.clone().into(),
                    u.session_key_enc.clone().into(),
                    u.profile.clone().into(),
                    u.created_at.into(),
                    u.last_login_at.into(),
                ]
            })
            .collect();
        let mut ids: HashMap<String, String> = HashMap::new();
        for row in insert_rows(
            tx,
            "INSERT INTO users (id, appid, openid, unionid, session_key_enc, profile, created_at, last_login_at) \
             VALUES {rows} ON CONFLICT (appid, openid) DO UPDATE SET unionid = COALESCE(users.unionid, excluded.unionid) \
             RETURNING id, openid",
            "",
            rows,
        )
        .await?
        {
            ids.insert(row.try_get("openid")?, row.try_get("id")?);
        }
        let mut out = Vec::with_capacity(self.0.len());
        let mut mapped = HashSet::new();
        let mut map_rows = Vec::new();
        for u in &self.0 {
            let user_id = ids.get(&u.openid).cloned().ok_or_else(|| {
                crate::error::Error::internal("database: an imported user's row did not come back")
            })?;
            if mapped.insert((u.platform, u.legacy_id.as_str())) {
                map_rows.push((u, user_id.clone()));
            }
            out.push(UserImported {
                created: !existed.contains(&u.openid) && user_id == u.new_id,
                user_id,
            });
        }
        let rows = map_rows
            .into_iter()
            .map(|(u, user_id)| {
                vec![
                    u.platform.into(),
                    u.appid.clone().into(),
                    u.legacy_id.clone().into(),
                    user_id.into(),
                ]
            })
            .collect();
        insert_rows(
            tx,
            "INSERT INTO import_user_map (platform, appid, legacy_id, user_id) VALUES {rows} \
             ON CONFLICT (platform, appid, legacy_id) DO UPDATE SET user_id = excluded.user_id",
            "",
            rows,
        )
        .await?;
        Ok(out)
    }
}

/// A document as an import writes it: its own times, version 1.
#[derive(Debug, Clone)]
pub struct ImportedDocument {
    /// Derived from the row's old id (the same on every run).
    pub id: String,
    /// The owner.
    pub user_id: String,
    /// The owner's app.
    pub appid: String,
    /// The collection.
    pub collection: String,
    /// The JSON object, as text.
    pub data: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// The per-user limits an import keeps to (None: raised for this import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Documents one user may have in one collection.
    pub max_documents: i64,
    /// What one user may store in all.
    pub quota: UserQuota,
}

/// What importing one document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentImported {
    /// Stored now.
    Stored,
    /// A document with its id exists (an earlier run stored it).
    AlreadyPresent,
    /// The owner's collection is full (`limits.documents_per_collection`).
    CollectionFull,
    /// The owner's quota across collections would be passed.
    OverQuota(UserLimit),
}

struct DocumentBatch {
    docs: Vec<ImportedDocument>,
    limits: Option<ImportLimits>,
}

/// One user's usage as a batch reads it and then counts it up.
#[derive(Default, Clone, Copy)]
struct Usage {
    collections: i64,
    bytes: i64,
}

type Value = super::exec::Value;

/// `$from, …` for `n` values.
fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most rows (or `IN` values) one statement takes.
const CHUNK: usize = 1024;

/// Sizes adding up to `n`, each a power of two of at most [`CHUNK`]: a
/// batch of any size is a few statement shapes, so each shape is prepared
/// once and the writer's statement cache holds a handful (one per size
/// kept thousands of large prepared statements).
fn power_of_two_chunks(mut n: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    while n > 0 {
        let size = (1usize << (usize::BITS - 1 - n.leading_zeros())).min(CHUNK);
        sizes.push(size);
        n -= size;
    }
    sizes
}

/// Runs `sql` with `{rows}` as the VALUES of `rows` (each `$`-numbered,
/// then `fixed` appended inside each row), in power-of-two chunks; every
/// row any chunk returned.
async fn insert_rows(
    tx: &mut Tx<'_>,
    sql: &str,
    fixed: &str,
    rows: Vec<Vec<Value>>,
) -> Result<Vec<super::exec::Row>> {
    let mut out = Vec::new();
    let mut rows = rows.into_iter();
    for size in power_of_two_chunks(rows.len()) {
        let chunk: Vec<Vec<Value>> = rows.by_ref().take(size).collect();
        let width = chunk.first().map_or(0, Vec::len);
        let values = (0..size)
            .map(|r| format!("({}{fixed})", placeholders(r * width + 1, width)))
            .collect::<Vec<_>>()
            .join(", ");
        let text = sql.replace("{rows}", &values);
        let mut q = query(&text);
        for v in chunk.into_iter().flatten() {
            q = q.bind(v);
        }
        out.extend(q.fetch_all(tx).await?);
    }
    Ok(out)
}

/// Runs `sql` with `{in}` as placeholders for `values` (numbered after
/// `fixed`), padded to a power of two by repeating the last value (the
/// same few statement shapes whatever the count), in chunks of [`CHUNK`].
async fn select_in(
    tx: &mut Tx<'_>,
    sql: &str,
    fixed: Vec<Value>,
    values: Vec<Value>,
) -> Result<Vec<super::exec::Row>> {
    let mut out = Vec::new();
    for chunk in values.chunks(CHUNK) {
        let Some(last) = chunk.last() else {
            continue;
        };
        let padded = chunk.len().next_power_of_two();
        let text = sql.replace("{in}", &placeholders(fixed.len() + 1, padded));
        let mut q = query(&text);
        for v in fixed.iter().cloned() {
            q = q.bind(v);
        }
        for v in chunk.iter().cloned() {
            q = q.bind(v);
        }
        for _ in chunk.len()..padded {
            q = q.bind(last.clone());
        }
        out.extend(q.fetch_all(tx).await?);
    }
    Ok(out)
}

impl Write for DocumentBatch {
    type Output = Vec<DocumentImported>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Vec<DocumentImported>>> {
        Box::pin(self.apply_batch(tx))
    }
}

impl DocumentBatch {
    /// A handful of statements whatever the batch's size: which ids exist,
    /// the owners' counts, one insert, one upsert of each counter table.
    async fn apply_batch(&self, tx: &mut Tx<'_>) -> Result<Vec<DocumentImported>> {
        let docs = &self.docs;
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        let present: HashSet<String> = select_in(
            tx,
            "SELECT id FROM documents WHERE id IN ({in})",
            Vec::new(),
            docs.iter().map(|d| d.id.clone().into()).collect(),
        )
        .await?
        .iter()
        .map(|r| r.try_get::<String>("id"))
        .collect::<Result<_>>()?;

        let users: Vec<&str> = {
            let mut seen = HashSet::new();
            docs.iter()
                .map(|d| d.user_id.as_str())
                .filter(|u| seen.insert(*u))
                .collect()
        };
        let mut counts: HashMap<(String, String), i64> = HashMap::new();
        let mut usage: HashMap<String, Usage> = HashMap::new();
        let owners: Vec<Value> = users.iter().map(|u| (*u).into()).collect();
        for row in select_in(
            tx,
            "SELECT user_id, collection, documents FROM collection_counts WHERE user_id IN ({in})",
            Vec::new(),
            owners.clone(),
        )
        .await?
        {
            counts.insert(
                (row.try_get("user_id")?, row.try_get("collection")?),
                row.try_get("documents")?,
            );
        }
        for row in select_in(
            tx,
            "SELECT user_id, collections, bytes FROM user_usage WHERE user_id IN ({in})",
            Vec::new(),
            owners,
        )
        .await?
        {
            usage.insert(
                row.try_get("user_id")?,
                Usage {
                    collections: row.try_get("collections")?,
                    bytes: row.try_get("bytes")?,
                },
            );
        }

        // Decide each row in order against the running totals.
        let mut outcome = Vec::with_capacity(docs.len());
        let mut accepted: Vec<&ImportedDocument> = Vec::new();
        let mut seen_ids = HashSet::new();
        for d in docs {
            if present.contains(&d.id) || !seen_ids.insert(d.id.as_str()) {
                outcome.push(DocumentImported::AlreadyPresent);
                continue;
            }
            let key = (d.user_id.clone(), d.collection.clone());
            let in_collection = counts.get(&key).copied().unwrap_or(0);
            let used = usage.get(&d.user_id).copied().unwrap_or_default();
            let size = size_of(&d.data);
            let new_collection = i64::from(in_collection <= 0);
            if let Some(limits) = self.limits {
                if in_collection + 1 > limits.max_documents {
                    outcome.push(DocumentImported::CollectionFull);
                    continue;
                }
                if used.collections + new_collection > limits.quota.max_collections {
                    outcome.push(DocumentImported::OverQuota(UserLimit::Collections));
                    continue;
                }
                if used.bytes + size > limits.quota.max_bytes {
                    outcome.push(DocumentImported::OverQuota(UserLimit::Bytes));
                    continue;
                }
            }
            counts.insert(key, in_collection + 1);
            usage.insert(
                d.user_id.clone(),
                Usage {
                    collections: used.collections + new_collection,
                    bytes: used.bytes + size,
                },
            );
            outcome.push(DocumentImported::Stored);
            accepted.push(d);
        }
        if accepted.is_empty() {
            return Ok(outcome);
        }

        let rows = accepted
            .iter()
            .map(|d| {
                vec![
                    d.id.clone().into(),
                    d.user_id.clone().into(),
                    d.collection.clone().into(),
                    d.data.clone().into(),
                    d.created_at.into(),
                    d.updated_at.into(),
                    size_of(&d.data).into(),
                    d.appid.clone().into(),
                ]
            })
            .collect();
        let inserted: HashSet<String> = insert_rows(
            tx,
            "INSERT INTO documents (id, user_id, collection, data, created_at, updated_at, size, appid, version) \
             VALUES {rows} ON CONFLICT (id) DO NOTHING RETURNING id",
            ", 1",
            rows,
        )
        .await?
        .iter()
            .map(|r| r.try_get::<String>("id"))
            .collect::<Result<_>>()?;

        // Count in what was inserted (a row another process inserted
        // meanwhile is its to count).
        let mut added: HashMap<(&str, &str), i64> = HashMap::new();
        let mut charged: HashMap<&str, Usage> = HashMap::new();
        for d in &accepted {
            if inserted.contains(&d.id) {
                *added
                    .entry((d.user_id.as_str(), d.collection.as_str()))
                    .or_default() += 1;
                charged.entry(d.user_id.as_str()).or_default().bytes += size_of(&d.data);
            }
        }
        for ((user, collection), n) in &added {
            let before = counts
                .get(&((*user).to_owned(), (*collection).to_owned()))
                .copied()
                .unwrap_or(0)
                - n;
            if before <= 0 {
                charged.entry(user).or_default().collections += 1;
            }
        }
        for (d, o) in docs.iter().zip(outcome.iter_mut()) {
            if *o == DocumentImported::Stored && !inserted.contains(&d.id) {
                *o = DocumentImported::AlreadyPresent;
            }
        }
        if added.is_empty() {
            return Ok(outcome);
        }
        let rows = added
            .into_iter()
            .map(|((user, collection), n)| vec![user.into(), collection.into(), n.into()])
            .collect();
        insert_rows(
            tx,
            "INSERT INTO collection_counts (user_id, collection, documents) VALUES {rows} \
             ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + excluded.documents",
            "",
            rows,
        )
        .await?;
        let rows = charged
            .into_iter()
            .map(|(user, u)| vec![user.into(), u.collections.into(), u.bytes.into()])
            .collect();
        insert_rows(
            tx,
            "INSERT INTO user_usage (user_id, collections, bytes) VALUES {rows} \
             ON CONFLICT (user_id) DO UPDATE SET collections = user_usage.collections + excluded.collections, \
               bytes = user_usage.bytes + excluded.bytes",
            "",
            rows,
        )
        .await?;
        Ok(outcome)
    }
}

impl Store {
    /// Creates the users an import names (an existing user with the same
    /// appid and openid is theirs) and records their old ids, in one commit.
    pub async fn import_users(&self, users: Vec<ImportedUser>) -> Result<Vec<UserImported>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.submit(UserBatch(users)).await
    }

    /// Stores a batch of imported documents in one commit: one already
    /// stored is passed over; with `limits`, one that would take its owner
    /// past them is refused. Each document's outcome, in order.
    pub async fn import_documents(
        &self,
        docs: Vec<ImportedDocument>,
        limits: Option<ImportLimits>,
    ) -> Result<Vec<DocumentImported>> {
        if docs.is_empty() {
            return Ok(Vec::new());
        }
        self.writer.submit(DocumentBatch { docs, limits }).await
    }

    /// PostgreSQL: refreshes the planner's statistics of the tables an
    /// import fills. A new database's tables look empty to the planner
    /// until autovacuum gets to them, and it then reads the user map with
    /// a sequential scan per lookup: 75 ms each, two thirds of a 100,000-row
    /// import's time, before this was called between phases. SQLite
    /// chooses its indexes without statistics: nothing to do.
    ///
    /// `users_only` after the users are in and before any document is:
    /// statistics taken of a table still empty tell the planner it stays
    /// empty, and its lookups of documents then scan them all (800 ms a
    /// batch in one run). A table never analyzed is estimated from its
    /// size, which is right.
    pub async fn refresh_import_statistics(&self, users_only: bool) -> Result<()> {
        if self.backend == super::Backend::Postgres {
            let sql = if users_only {
                "ANALYZE users, import_user_map"
            } else {
                "ANALYZE users, import_user_map, documents, collection_counts, user_usage"
            };
            sqlx::query(sql).execute(&self.pool).await?;
        }
        Ok(())
    }

    /// Which users earlier imports from `platform` made of `legacy_ids`
    /// (old id → user id), for ids still held by a user.
    pub async fn imported_user_ids(
        &self,
        platform: &str,
        appid: &str,
        legacy_ids: &[String],
    ) -> Result<HashMap<String, String>> {
        let rows = self
            .rows_in(
                "SELECT legacy_id, user_id FROM import_user_map WHERE platform = $1 AND appid = $2 AND legacy_id IN ({in})",
                &[platform, appid],
                legacy_ids,
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("legacy_id")?, r.try_get("user_id")?)))
            .collect()
    }

    /// Which of `ids` are documents (a dry run's "already present").
    pub async fn known_document_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let rows = self
            .rows_in("SELECT id FROM documents WHERE id IN ({in})", &[], ids)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// The users of `appid` with these openids (openid → user id).
    pub async fn user_ids_by_openid(
        &self,
        appid: &str,
        openids: &[String],
    ) -> Result<HashMap<String, String>> {
        let rows = self
            .rows_in(
                "SELECT openid, id FROM users WHERE appid = $1 AND openid IN ({in})",
                &[appid],
                openids,
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("openid")?, r.try_get("id")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_few_statement_shapes() {
        assert_eq!(power_of_two_chunks(0), Vec::<usize>::new());
        assert_eq!(power_of_two_chunks(1), [1]);
        assert_eq!(power_of_two_chunks(2000), [1024, 512, 256, 128, 64, 16]);
        assert_eq!(
            power_of_two_chunks(3000),
            [1024, 1024, 512, 256, 128, 32, 16, 8]
        );
        for n in 0..3000 {
            assert_eq!(power_of_two_chunks(n).iter().sum::<usize>(), n);
        }
    }
}
