//! Documents: writes (each a [`Write`] applied by the group-commit writer)
//! and reads.

use futures_util::future::BoxFuture;

use super::Store;
use super::changes::{Change, ChangeOp};
use super::exec::query;
use super::rows::{COLUMNS, DocumentRecord};
use super::writer::{Tx, Write, answered_rows};
use crate::error::{Error, Result};
use crate::vocab::query::Scope;

/// What one document costs of `limits.bytes_per_user` besides its JSON:
/// its row (ids, times, version, app) and its index entries, so the byte
/// limit bounds the database a user can fill (a million `{}` documents
/// cost 514 MB of quota, not 2 MB). PostgreSQL keeps the JSON twice (as
/// text and as jsonb), which this does not count.
pub const DOCUMENT_OVERHEAD_BYTES: i64 = 512;

/// What a document is charged: its JSON's bytes and the fixed overhead.
/// Stored with the document (`size`), so a delete gives back exactly what
/// its write took, whichever rule charged it.
pub(super) fn size_of(data: &str) -> i64 {
    i64::try_from(data.len())
        .unwrap_or(i64::MAX / 2)
        .saturating_add(DOCUMENT_OVERHEAD_BYTES)
}

/// Adds to the user's usage unless that would pass `quota`; None when it
/// would (nothing changed then), naming the limit.
async fn charge(
    tx: &mut Tx<'_>,
    user_id: &str,
    collections: i64,
    bytes: i64,
    quota: UserQuota,
) -> Result<Option<UserLimit>> {
    if collections > quota.max_collections {
        return Ok(Some(UserLimit::Collections));
    }
    if bytes > quota.max_bytes {
        return Ok(Some(UserLimit::Bytes));
    }
    // Growth is checked against the quota; shrinking always passes.
    let done = query(
        "INSERT INTO user_usage (user_id, collections, bytes) VALUES ($1, $2, $3) \
         ON CONFLICT (user_id) DO UPDATE SET collections = user_usage.collections + excluded.collections, \
           bytes = user_usage.bytes + excluded.bytes \
         WHERE (excluded.collections <= 0 OR user_usage.collections + excluded.collections <= $4) \
           AND (excluded.bytes <= 0 OR user_usage.bytes + excluded.bytes <= $5)",
    )
    .bind(user_id)
    .bind(collections)
    .bind(bytes)
    .bind(quota.max_collections)
    .bind(quota.max_bytes)
    .execute(tx)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(None);
    }
    Ok(Some(limit_passed(tx, user_id, collections, quota).await?))
}

/// Which limit a refused charge of `collections` (and some bytes) would
/// have passed: collections if it adds one past the quota, else bytes.
async fn limit_passed(
    tx: &mut Tx<'_>,
    user_id: &str,
    collections: i64,
    quota: UserQuota,
) -> Result<UserLimit> {
    let row = query("SELECT collections FROM user_usage WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(tx)
        .await?;
    let have: i64 = row.try_get("collections")?;
    Ok(
        if collections > 0 && have + collections > quota.max_collections {
            UserLimit::Collections
        } else {
            UserLimit::Bytes
        },
    )
}

/// A create, with its optional idempotency key.
pub struct NewDocument {
    /// The id to give it.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// The owner's app (shared collections are read per app).
    pub appid: String,
    /// Which collection.
    pub collection: String,
    /// The JSON object, as text.
    pub data: String,
    /// Unix milliseconds.
    pub now: i64,
    /// Most documents the user may have in the collection.
    pub max_documents: i64,
    /// What the user may store in all.
    pub quota: UserQuota,
    /// `Idempotency-Key` and a hash of the request it came with.
    pub idempotency: Option<Idempotency>,
}

/// What one user may store across all collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserQuota {
    /// Collections holding at least one document.
    pub max_collections: i64,
    /// Bytes of document JSON.
    pub max_bytes: i64,
}

/// Which per-user limit a write would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserLimit {
    /// `limits.collections_per_user`.
    Collections,
    /// `limits.bytes_per_user`.
    Bytes,
}

/// An idempotency key as the store keeps it.
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// SHA-256 of collection and body: a reuse with another request is
    /// refused, and the same hash means the same data.
    pub request_hash: Vec<u8>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Stored.
    Created(DocumentRecord),
    /// The key was seen before with the same request (so the same data):
    /// what that first create made.
    Replayed(FirstCreate),
    /// The key was seen before with a different request.
    KeyReused,
    /// The collection is full.
    LimitReached,
    /// The user's quota across collections would be passed.
    UserLimitReached(UserLimit),
}

/// What the first create with an idempotency key made. With the request's
/// data (the same, as the request hash matched) it is the document as that
/// create answered it: version 1, created and updated at `created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstCreate {
    /// The document it created.
    pub document_id: String,
    /// When, Unix milliseconds.
    pub created_at: i64,
}

/// What a replace did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplaceOutcome {
    /// Replaced.
    Replaced(DocumentRecord),
    /// No such document of this user.
    NotFound,
    /// The version is no longer the one named.
    VersionMoved,
    /// The new data would pass the user's byte quota.
    UserLimitReached(UserLimit),
}

impl Write for NewDocument {
    type Output = CreateOutcome;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<CreateOutcome>> {
        Box::pin(create(tx, self))
    }
    const TOGETHER: bool = true;
    fn apply_together<'a>(
        writes: &'a [&'a Self],
        tx: &'a mut Tx<'_>,
    ) -> BoxFuture<'a, Result<Vec<Option<CreateOutcome>>>> {
        Box::pin(create_together(tx, writes))
    }
    fn changes(&self, output: &CreateOutcome, out: &mut Vec<Change>) {
        let CreateOutcome::Created(r) = output else {
            return;
        };
        out.push(Change {
            appid: self.appid.clone(),
            collection: r.collection.clone(),
            doc_id: r.id.clone(),
            user_id: r.owner.clone(),
            op: ChangeOp::Create,
            data: Some(r.data.clone()),
            updated: Vec::new(),
            removed: Vec::new(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
}

impl NewDocument {
    /// Whether this create can be one statement (see `create`).
    fn in_one_statement(&self) -> bool {
        self.idempotency.is_none()
            && size_of(&self.data) <= self.quota.max_bytes
            && self.quota.max_collections >= 1
    }
}

async fn create(tx: &mut Tx<'_>, doc: &NewDocument) -> Result<CreateOutcome> {
    // The edge cases (a document alone over the byte quota, no collection
    // allowed at all) keep the statement-by-statement path below, whose
    // checks come in the order clients see.
    if tx.chains_writes() && doc.in_one_statement() {
        return create_in_one_statement(tx, doc).await;
    }
    if let Some(idem) = &doc.idempotency {
        let seen = query("SELECT request_hash, document_id, created_at FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2")
            .bind(&doc.user_id)
            .bind(&idem.key)
            .fetch_optional(tx)
            .await?;
        if let Some(seen) = seen {
            let hash: Vec<u8> = seen.try_get("request_hash")?;
            return Ok(if hash == idem.request_hash {
                CreateOutcome::Replayed(FirstCreate {
                    document_id: seen.try_get("document_id")?,
                    created_at: seen.try_get("created_at")?,
                })
            } else {
                CreateOutcome::KeyReused
            });
        }
    }
    // One statement: count the document in, unless the collection is full.
    let counted = query(
        "INSERT INTO collection_counts (user_id, collection, documents) VALUES ($1, $2, 1) \
         ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + 1 \
         WHERE collection_counts.documents < $3 RETURNING documents",
    )
    .bind(&doc.user_id)
    .bind(&doc.collection)
    .bind(doc.max_documents)
    .fetch_optional(tx)
    .await?;
    let Some(counted) = counted else {
        return Ok(CreateOutcome::LimitReached);
    };
    let documents: i64 = counted.try_get("documents")?;
    let size = size_of(&doc.data);
    let new_collection = i64::from(documents == 1);
    if let Some(limit) = charge(tx, &doc.user_id, new_collection, size, doc.quota).await? {
        // Undo the count: this create is refused, the batch goes on.
        query(
            "UPDATE collection_counts SET documents = documents - 1 WHERE user_id = $1 AND collection = $2",
        )
        .bind(&doc.user_id)
        .bind(&doc.collection)
        .execute(tx)
        .await?;
        return Ok(CreateOutcome::UserLimitReached(limit));
    }
    let row = query(&format!(
        "INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid) \
         VALUES ($1, $2, $3, $4, 1, $5, $5, $6, $7) RETURNING {COLUMNS}"
    ))
    .bind(&doc.id)
    .bind(&doc.user_id)
    .bind(&doc.collection)
    .bind(&doc.data)
    .bind(doc.now)
    .bind(size)
    .bind(&doc.appid)
    .fetch_one(tx)
    .await?;
    let record = DocumentRecord::from_row(&row)?;
    if let Some(idem) = &doc.idempotency {
        // `response` is a legacy column (answers were once stored rendered).
        query("INSERT INTO idempotency_keys (user_id, idem_key, request_hash, response, created_at, document_id) VALUES ($1, $2, $3, '', $4, $5)")
            .bind(&doc.user_id)
            .bind(&idem.key)
            .bind(idem.request_hash.clone())
            .bind(doc.now)
            .bind(&record.id)
            .execute(tx)
            .await?;
    }
    Ok(CreateOutcome::Created(record))
}

/// PostgreSQL: count, charge and insert in one statement (one round trip
/// instead of three). A create the user's quota refuses was counted in;
/// only then does a second statement take the count back out.
async fn create_in_one_statement(tx: &mut Tx<'_>, doc: &NewDocument) -> Result<CreateOutcome> {
    let size = size_of(&doc.data);
    let row = query(&format!(
        "WITH counted AS ( \
           INSERT INTO collection_counts (user_id, collection, documents) VALUES ($1, $2, 1) \
           ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + 1 \
           WHERE collection_counts.documents < $3 RETURNING documents), \
         charged AS ( \
           INSERT INTO user_usage (user_id, collections, bytes) \
           SELECT $1, CASE WHEN documents = 1 THEN 1 ELSE 0 END, $4 FROM counted \
           ON CONFLICT (user_id) DO UPDATE SET collections = user_usage.collections + excluded.collections, \
             bytes = user_usage.bytes + excluded.bytes \
           WHERE (excluded.collections <= 0 OR user_usage.collections + excluded.collections <= $5) \
             AND (excluded.bytes <= 0 OR user_usage.bytes + excluded.bytes <= $6) \
           RETURNING user_id), \
         inserted AS ( \
           INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid) \
           SELECT $7, $1, $2, $8, 1, $9, $9, $4, $10 FROM charged RETURNING {COLUMNS}) \
         SELECT (SELECT documents FROM counted) AS counted, inserted.* \
         FROM (SELECT 1) AS one LEFT JOIN inserted ON true"
    ))
    .bind(&doc.user_id)
    .bind(&doc.collection)
    .bind(doc.max_documents)
    .bind(size)
    .bind(doc.quota.max_collections)
    .bind(doc.quota.max_bytes)
    .bind(&doc.id)
    .bind(&doc.data)
    .bind(doc.now)
    .bind(&doc.appid)
    .fetch_one(tx)
    .await?;
    let Some(documents) = row.try_get::<Option<i64>>("counted")? else {
        return Ok(CreateOutcome::LimitReached);
    };
    if row.try_get::<Option<String>>("id")?.is_some() {
        return Ok(CreateOutcome::Created(DocumentRecord::from_row(&row)?));
    }
    // Counted but over the user's quota: take the count back, then name
    // the limit as `charge` does.
    query("UPDATE collection_counts SET documents = documents - 1 WHERE user_id = $1 AND collection = $2")
        .bind(&doc.user_id)
        .bind(&doc.collection)
        .execute(tx)
        .await?;
    let new_collection = i64::from(documents == 1);
    let limit = limit_passed(tx, &doc.user_id, new_collection, doc.quota).await?;
    Ok(CreateOutcome::UserLimitReached(limit))
}

/// One row of `create_together`'s input.
#[derive(serde::Serialize)]
struct GroupRow<'a> {
    ord: usize,
    id: &'a str,
    user_id: &'a str,
    collection: &'a str,
    data: &'a str,
    now: i64,
    size: i64,
    appid: &'a str,
}

/// PostgreSQL: creates of different users with the same limits, all in one
/// statement (the one-statement create over a set of rows, which arrive as
/// one JSON parameter: sqlx's `Any` driver binds no arrays). One user at
/// most once: a statement cannot count the same row in twice. The others
/// are answered None and applied alone.
async fn create_together(
    tx: &mut Tx<'_>,
    docs: &[&NewDocument],
) -> Result<Vec<Option<CreateOutcome>>> {
    let mut outcomes: Vec<Option<CreateOutcome>> = docs.iter().map(|_| None).collect();
    let Some(first) = docs.iter().find(|d| d.in_one_statement()) else {
        return Ok(outcomes);
    };
    let (max_documents, quota) = (first.max_documents, first.quota);
    let mut users = std::collections::HashSet::new();
    let rows: Vec<GroupRow> = docs
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.in_one_statement()
                && d.max_documents == max_documents
                && d.quota == quota
                && users.insert(d.user_id.as_str())
        })
        .map(|(ord, d)| GroupRow {
            ord,
            id: &d.id,
            user_id: &d.user_id,
            collection: &d.collection,
            data: &d.data,
            now: d.now,
            size: size_of(&d.data),
            appid: &d.appid,
        })
        .collect();
    if rows.len() < 2 {
        return Ok(outcomes);
    }
    let input = serde_json::to_string(&rows).map_err(Error::internal)?;
    // The creates' changes are logged by this statement too (one statement
    // fewer per commit; see `exec::Logged`): positions taken in key
    // order, numbered in id order within each collection.
    let logs = tx.logged().is_some();
    let (log_ctes, log_join, log_column) = if logs {
        (
            ", pos AS ( \
               INSERT INTO change_positions (appid, collection, position) \
               SELECT appid, collection, count(*) FROM inserted \
               GROUP BY appid, collection ORDER BY appid, collection \
               ON CONFLICT (appid, collection) \
               DO UPDATE SET position = change_positions.position + excluded.position \
               RETURNING appid, collection, position), \
             logged AS ( \
               INSERT INTO changes (appid, collection, position, doc_id, user_id, op, data, \
                 fields, version, created_at, updated_at, committed_at) \
               SELECT d.appid, d.collection, p.position - count(*) OVER w \
                   + row_number() OVER (w ORDER BY d.id), \
                 d.id, d.user_id, 'create', d.data, NULL, d.version, d.created_at, \
                 d.updated_at, $5 \
               FROM inserted d JOIN pos p ON p.appid = d.appid AND p.collection = d.collection \
               WINDOW w AS (PARTITION BY d.appid, d.collection) \
               RETURNING doc_id, position)",
            " LEFT JOIN logged l ON l.doc_id = d.id",
            ", l.position AS logged_position",
        )
    } else {
        ("", "", "")
    };
    let committed_at = super::changes::committed_now();
    let sql = format!(
        "WITH input AS ( \
           SELECT * FROM json_to_recordset($1::json) AS t(ord bigint, id text, user_id text, \
             collection text, data text, now bigint, size bigint, appid text)), \
         counted AS ( \
           INSERT INTO collection_counts (user_id, collection, documents) \
           SELECT user_id, collection, 1 FROM input \
           ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + 1 \
           WHERE collection_counts.documents < $2 RETURNING user_id, documents), \
         charged AS ( \
           INSERT INTO user_usage (user_id, collections, bytes) \
           SELECT c.user_id, CASE WHEN c.documents = 1 THEN 1 ELSE 0 END, i.size \
           FROM counted c JOIN input i ON i.user_id = c.user_id \
           ON CONFLICT (user_id) DO UPDATE SET collections = user_usage.collections + excluded.collections, \
             bytes = user_usage.bytes + excluded.bytes \
           WHERE (excluded.collections <= 0 OR user_usage.collections + excluded.collections <= $3) \
             AND (excluded.bytes <= 0 OR user_usage.bytes + excluded.bytes <= $4) \
           RETURNING user_id), \
         inserted AS ( \
           INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at, size, appid) \
           SELECT i.id, i.user_id, i.collection, i.data, 1, i.now, i.now, i.size, i.appid \
           FROM input i JOIN charged ch ON ch.user_id = i.user_id RETURNING {COLUMNS}, appid) \
           {log_ctes} \
         SELECT i.ord, c.documents AS counted, d.*{log_column} \
         FROM input i LEFT JOIN counted c ON c.user_id = i.user_id \
           LEFT JOIN inserted d ON d.user_id = i.user_id{log_join}"
    );
    let mut grouped = query(&sql)
        .bind(input)
        .bind(max_documents)
        .bind(quota.max_collections)
        .bind(quota.max_bytes);
    if logs {
        grouped = grouped.bind(committed_at);
    }
    let found = grouped.fetch_all(tx).await?;
    if let Some(sink) = tx.logged() {
        for row in &found {
            if let Some(position) = row.try_get::<Option<i64>>("logged_position")? {
                let ord = usize::try_from(row.try_get::<i64>("ord")?).ok();
                let doc = ord
                    .and_then(|o| docs.get(o))
                    .ok_or_else(|| Error::internal("database: a group row's ord out of range"))?;
                sink.add(&doc.appid, &doc.collection, &doc.id, position);
            }
        }
    }
    for (row, ord, doc) in answered_rows(found, rows.len(), docs)? {
        let outcome = match row.try_get::<Option<i64>>("counted")? {
            None => CreateOutcome::LimitReached,
            Some(_) if row.try_get::<Option<String>>("id")?.is_some() => {
                CreateOutcome::Created(DocumentRecord::from_row(&row)?)
            }
            Some(documents) => {
                // Counted but over the user's quota: as in the one-row create.
                query("UPDATE collection_counts SET documents = documents - 1 WHERE user_id = $1 AND collection = $2")
                    .bind(&doc.user_id)
                    .bind(&doc.collection)
                    .execute(tx)
                    .await?;
                let new_collection = i64::from(documents == 1);
                CreateOutcome::UserLimitReached(
                    limit_passed(tx, &doc.user_id, new_collection, quota).await?,
                )
            }
        };
        outcomes[ord] = Some(outcome);
    }
    Ok(outcomes)
}

/// A replace of a document's data, if it is the user's and, when given,
/// still at `if_version`, and the user's byte quota allows the new size.
pub struct Replacement {
    /// Whose.
    pub user_id: String,
    /// Which collection.
    pub collection: String,
    /// Which document.
    pub id: String,
    /// The new JSON object, as text.
    pub data: String,
    /// The version it must still be at.
    pub if_version: Option<i64>,
    /// Unix milliseconds.
    pub now: i64,
    /// What the user may store in all.
    pub quota: UserQuota,
}

/// A replace's outcome, and for the change log the document's app and the
/// fields it set and removed.
pub(super) struct Replaced {
    outcome: ReplaceOutcome,
    change: Option<(String, Vec<String>, Vec<String>)>,
}

impl Write for Replacement {
    type Output = Replaced;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Replaced>> {
        Box::pin(replace(tx, self))
    }
    fn changes(&self, output: &Replaced, out: &mut Vec<Change>) {
        let (ReplaceOutcome::Replaced(r), Some((appid, updated, removed))) =
            (&output.outcome, &output.change)
        else {
            return;
        };
        out.push(Change {
            appid: appid.clone(),
            collection: r.collection.clone(),
            doc_id: r.id.clone(),
            user_id: r.owner.clone(),
            op: ChangeOp::Replace,
            data: Some(r.data.clone()),
            updated: updated.clone(),
            removed: removed.clone(),
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
}

async fn replace(tx: &mut Tx<'_>, r: &Replacement) -> Result<Replaced> {
    let only = |outcome| Replaced {
        outcome,
        change: None,
    };
    let (user_id, collection, id, data) = (&r.user_id, &r.collection, &r.id, &r.data);
    // Read the current size and version with the row locked (a no-op
    // UPDATE, valid on both databases), so the usage delta is exact even
    // with another instance writing the same document.
    let current = query(
        "UPDATE documents SET version = version WHERE id = $1 AND user_id = $2 AND collection = $3 \
         RETURNING size, version, appid, data",
    )
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .fetch_optional(tx)
    .await?;
    let Some(current) = current else {
        return Ok(only(ReplaceOutcome::NotFound));
    };
    let old_size: i64 = current.try_get("size")?;
    let version: i64 = current.try_get("version")?;
    if r.if_version.is_some_and(|v| v != version) {
        return Ok(only(ReplaceOutcome::VersionMoved));
    }
    let size = size_of(data);
    if let Some(limit) = charge(tx, user_id, 0, size - old_size, r.quota).await? {
        return Ok(only(ReplaceOutcome::UserLimitReached(limit)));
    }
    let appid: String = current.try_get("appid")?;
    let before: String = current.try_get("data")?;
    let (updated, removed) = super::changes::changed_fields(&before, data);
    let row = query(&format!(
        "UPDATE documents SET data = $1, size = $2, version = version + 1, updated_at = $3 \
         WHERE id = $4 AND user_id = $5 AND collection = $6 RETURNING {COLUMNS}"
    ))
    .bind(data)
    .bind(size)
    .bind(r.now)
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .fetch_one(tx)
    .await?;
    Ok(Replaced {
        outcome: ReplaceOutcome::Replaced(DocumentRecord::from_row(&row)?),
        change: Some((appid, updated, removed)),
    })
}

struct Deletion {
    user_id: String,
    collection: String,
    id: String,
}

/// A deleted document, as the change log records it.
pub(super) struct Deleted {
    appid: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

impl Write for Deletion {
    type Output = Option<Deleted>;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Option<Deleted>>> {
        Box::pin(delete(tx, &self.user_id, &self.collection, &self.id))
    }
    fn changes(&self, output: &Option<Deleted>, out: &mut Vec<Change>) {
        let Some(d) = output else {
            return;
        };
        out.push(Change {
            appid: d.appid.clone(),
            collection: self.collection.clone(),
            doc_id: self.id.clone(),
            user_id: self.user_id.clone(),
            op: ChangeOp::Delete,
            data: None,
            updated: Vec::new(),
            removed: Vec::new(),
            version: d.version,
            created_at: d.created_at,
            updated_at: d.updated_at,
        });
    }
}

async fn delete(
    tx: &mut Tx<'_>,
    user_id: &str,
    collection: &str,
    id: &str,
) -> Result<Option<Deleted>> {
    let done = query(
        "DELETE FROM documents WHERE id = $1 AND user_id = $2 AND collection = $3 \
         RETURNING size, appid, version, created_at, updated_at",
    )
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .fetch_optional(tx)
    .await?;
    let Some(done) = done else {
        return Ok(None);
    };
    let size: i64 = done.try_get("size")?;
    let deleted = Deleted {
        appid: done.try_get("appid")?,
        version: done.try_get("version")?,
        created_at: done.try_get("created_at")?,
        updated_at: done.try_get("updated_at")?,
    };
    let left = query("UPDATE collection_counts SET documents = documents - 1 WHERE user_id = $1 AND collection = $2 RETURNING documents")
        .bind(user_id)
        .bind(collection)
        .fetch_optional(tx)
        .await?;
    let emptied = match left {
        Some(row) => row.try_get::<i64>("documents")? == 0,
        None => false,
    };
    query(
        "UPDATE user_usage SET collections = collections - $1, bytes = bytes - $2 WHERE user_id = $3",
    )
    .bind(i64::from(emptied))
    .bind(size)
    .bind(user_id)
    .execute(tx)
    .await?;
    Ok(Some(deleted))
}

impl Store {
    /// Creates a document, honouring its idempotency key and the
    /// collection's size limit, in one commit.
    pub async fn create_document(&self, doc: NewDocument) -> Result<CreateOutcome> {
        self.writer.submit(doc).await
    }

    /// Replaces a document's data (see [`Replacement`]).
    pub async fn replace_document(&self, replacement: Replacement) -> Result<ReplaceOutcome> {
        Ok(self.writer.submit(replacement).await?.outcome)
    }

    /// Deletes a document of the user; false if there was none.
    pub async fn delete_document(&self, user_id: &str, collection: &str, id: &str) -> Result<bool> {
        self.writer
            .submit(Deletion {
                user_id: user_id.to_owned(),
                collection: collection.to_owned(),
                id: id.to_owned(),
            })
            .await
            .map(|deleted| deleted.is_some())
    }

    /// Forgets idempotency keys created before `before` (Unix ms).
    pub async fn expire_idempotency_keys(&self, before: i64) -> Result<u64> {
        self.writer
            .submit(super::writer::DeleteBefore {
                sql: "DELETE FROM idempotency_keys WHERE created_at < $1",
                before,
            })
            .await
    }

    /// One document in a scope (a user's, or an app's shared collection).
    pub async fn document(&self, scope: &Scope, id: &str) -> Result<Option<DocumentRecord>> {
        match &self.document_reads {
            Some(reads) => reads.read(&(scope.clone(), id.to_owned())).await,
            None => super::grouped_reads::document_alone(&self.pool, scope, id).await,
        }
    }
}
