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
        Box::pin(async move {
            let mut out = Vec::with_capacity(self.0.len());
            for u in &self.0 {
                let existed = query("SELECT id FROM users WHERE appid = $1 AND openid = $2")
                    .bind(&u.appid)
                    .bind(&u.openid)
                    .fetch_optional(tx)
                    .await?
                    .is_some();
                // An existing user keeps everything but gains a unionid
                // they lacked; DO UPDATE (not NOTHING) so the row's id
                // comes back either way.
                let row = query(
                    "INSERT INTO users (id, appid, openid, unionid, session_key_enc, profile, created_at, last_login_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (appid, openid) DO UPDATE SET unionid = COALESCE(users.unionid, excluded.unionid) \
                     RETURNING id",
                )
                .bind(&u.new_id)
                .bind(&u.appid)
                .bind(&u.openid)
                .bind(u.unionid.clone())
                .bind(u.session_key_enc.clone())
                .bind(&u.profile)
                .bind(u.created_at)
                .bind(u.last_login_at)
                .fetch_one(tx)
                .await?;
                let user_id: String = row.try_get("id")?;
                query(
                    "INSERT INTO import_user_map (platform, appid, legacy_id, user_id) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (platform, appid, legacy_id) DO UPDATE SET user_id = excluded.user_id",
                )
                .bind(u.platform)
                .bind(&u.appid)
                .bind(&u.legacy_id)
                .bind(&user_id)
                .execute(tx)
                .await?;
                out.push(UserImported {
                    created: !existed && user_id == u.new_id,
                    user_id,
                });
            }
            Ok(out)
        })
    }
    fn committed(&self, done: &Vec<UserImported>, users: &UserCache) {
        for d in done {
            users.forget(&d.user_id);
        }
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

/// Placeholders `($a, $b, …)` for `rows` rows of `width` values, from `$1`.
fn value_rows(rows: usize, width: usize, fixed: &str) -> String {
    (0..rows)
        .map(|r| {
            let marks: Vec<String> = (1..=width).map(|c| format!("${}", r * width + c)).collect();
            format!("({}{fixed})", marks.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn marks(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
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
        let mut q = query_owned(format!(
            "SELECT id FROM documents WHERE id IN ({})",
            marks(docs.len())
        ));
        for d in docs {
            q.args.push(d.id.clone().into());
        }
        let present: HashSet<String> = q
            .run_all(tx)
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
        let mut q = query_owned(format!(
            "SELECT user_id, collection, documents FROM collection_counts WHERE user_id IN ({})",
            marks(users.len())
        ));
        for u in &users {
            q.args.push((*u).into());
        }
        for row in q.run_all(tx).await? {
            counts.insert(
                (row.try_get("user_id")?, row.try_get("collection")?),
                row.try_get("documents")?,
            );
        }
        let mut q = query_owned(format!(
            "SELECT user_id, collections, bytes FROM user_usage WHERE user_id IN ({})",
            marks(users.len())
        ));
        for u in &users {
            q.args.push((*u).into());
        }
        for row in q.run_all(tx).await? {
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

        let mut q = query_owned(format!(
            "INSERT INTO documents (id, user_id, collection, data, created_at, updated_at, size, appid, version) \
             VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            value_rows(accepted.len(), 8, ", 1")
        ));
        for d in &accepted {
            q.args.extend([
                d.id.clone().into(),
                d.user_id.clone().into(),
                d.collection.clone().into(),
                d.data.clone().into(),
                d.created_at.into(),
                d.updated_at.into(),
                size_of(&d.data).into(),
                d.appid.clone().into(),
            ]);
        }
        let inserted: HashSet<String> = q
            .run_all(tx)
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
        let added: Vec<_> = added.into_iter().collect();
        let mut q = query_owned(format!(
            "INSERT INTO collection_counts (user_id, collection, documents) VALUES {} \
             ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + excluded.documents",
            value_rows(added.len(), 3, "")
        ));
        for ((user, collection), n) in &added {
            q.args
                .extend([(*user).into(), (*collection).into(), (*n).into()]);
        }
        q.run(tx).await?;
        let charged: Vec<_> = charged.into_iter().collect();
        let mut q = query_owned(format!(
            "INSERT INTO user_usage (user_id, collections, bytes) VALUES {} \
             ON CONFLICT (user_id) DO UPDATE SET collections = user_usage.collections + excluded.collections, \
               bytes = user_usage.bytes + excluded.bytes",
            value_rows(charged.len(), 3, "")
        ));
        for (user, u) in &charged {
            q.args
                .extend([(*user).into(), u.collections.into(), u.bytes.into()]);
        }
        q.run(tx).await?;
        Ok(outcome)
    }
}

/// A statement whose text is built for the batch at hand.
struct OwnedQuery {
    sql: String,
    args: Vec<super::exec::Value>,
}

fn query_owned(sql: String) -> OwnedQuery {
    OwnedQuery {
        sql,
        args: Vec::new(),
    }
}

impl OwnedQuery {
    async fn run_all(self, tx: &mut Tx<'_>) -> Result<Vec<super::exec::Row>> {
        let mut q = query(&self.sql);
        for a in self.args {
            q = q.bind(a);
        }
        q.fetch_all(tx).await
    }

    async fn run(self, tx: &mut Tx<'_>) -> Result<()> {
        let mut q = query(&self.sql);
        for a in self.args {
            q = q.bind(a);
        }
        q.execute(tx).await?;
        Ok(())
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

    /// Which users earlier imports from `platform` made of `legacy_ids`
    /// (old id → user id), for ids still held by a user.
    pub async fn imported_user_ids(
        &self,
        platform: &str,
        appid: &str,
        legacy_ids: &[String],
    ) -> Result<HashMap<String, String>> {
        let mut found = HashMap::new();
        for batch in legacy_ids.chunks(super::IDS_PER_LOOKUP) {
            let sql = format!(
                "SELECT legacy_id, user_id FROM import_user_map WHERE platform = $1 AND appid = $2 AND legacy_id IN ({})",
                (3..batch.len() + 3)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(&sql).bind(platform).bind(appid);
            for id in batch {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                found.insert(row.try_get("legacy_id")?, row.try_get("user_id")?);
            }
        }
        Ok(found)
    }

    /// Which of `ids` are documents (a dry run's "already present").
    pub async fn known_document_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let mut known = HashSet::new();
        for batch in ids.chunks(super::IDS_PER_LOOKUP) {
            let sql = format!(
                "SELECT id FROM documents WHERE id IN ({})",
                marks(batch.len())
            );
            let mut q = sqlx::query(&sql);
            for id in batch {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                known.insert(row.try_get("id")?);
            }
        }
        Ok(known)
    }

    /// The users of `appid` with these openids (openid → user id).
    pub async fn user_ids_by_openid(
        &self,
        appid: &str,
        openids: &[String],
    ) -> Result<HashMap<String, String>> {
        let mut found = HashMap::new();
        for batch in openids.chunks(super::IDS_PER_LOOKUP) {
            let sql = format!(
                "SELECT openid, id FROM users WHERE appid = $1 AND openid IN ({})",
                (2..batch.len() + 2)
                    .map(|i| format!("${i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut q = sqlx::query(&sql).bind(appid);
            for id in batch {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                found.insert(row.try_get("openid")?, row.try_get("id")?);
            }
        }
        Ok(found)
    }
}
