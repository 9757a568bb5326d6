//! Document writes (applied by the group-commit writer) and reads.

use sqlx::any::AnyRow;
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::error::Result;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// UUIDv7.
    pub id: String,
    /// The collection.
    pub collection: String,
    /// The JSON object, as text.
    pub data: String,
    /// 1 at creation, +1 on each replace.
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

const COLUMNS: &str = "id, collection, data, version, created_at, updated_at";

impl DocumentRecord {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            collection: row.try_get("collection")?,
            data: row.try_get("data")?,
            version: row.try_get("version")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// A create, with its optional idempotency key.
pub struct NewDocument {
    /// The id to give it.
    pub id: String,
    /// Whose.
    pub user_id: String,
    /// Which collection.
    pub collection: String,
    /// The JSON object, as text.
    pub data: String,
    /// Unix milliseconds.
    pub now: i64,
    /// Most documents the user may have in the collection.
    pub max_documents: i64,
    /// `Idempotency-Key` and a hash of the request it came with, plus the
    /// answer to store for it (rendered by the caller from this record).
    pub idempotency: Option<Idempotency>,
}

/// An idempotency key as the store keeps it.
pub struct Idempotency {
    /// The key.
    pub key: String,
    /// SHA-256 of collection and body: a reuse with another request is refused.
    pub request_hash: Vec<u8>,
    /// Renders the answer to store, from the created document.
    pub render: Box<dyn Fn(&DocumentRecord) -> String + Send + Sync>,
}

/// What a create did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// Stored.
    Created(DocumentRecord),
    /// The key was seen before with the same request: its first answer.
    Replayed(StoredAnswer),
    /// The key was seen before with a different request.
    KeyReused,
    /// The collection is full.
    LimitReached,
}

/// The first answer to an idempotency key, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The answer's body, exactly as first sent.
    pub response: String,
    /// The document that create made (None for keys stored before the
    /// column existed).
    pub document_id: Option<String>,
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
}

pub(super) async fn create(
    tx: &mut Transaction<'static, Any>,
    doc: &NewDocument,
) -> Result<CreateOutcome> {
    if let Some(idem) = &doc.idempotency {
        let seen = sqlx::query("SELECT request_hash, response, document_id FROM idempotency_keys WHERE user_id = $1 AND idem_key = $2")
            .bind(&doc.user_id)
            .bind(&idem.key)
            .fetch_optional(&mut **tx)
            .await?;
        if let Some(seen) = seen {
            let hash: Vec<u8> = seen.try_get("request_hash")?;
            return Ok(if hash == idem.request_hash {
                CreateOutcome::Replayed(StoredAnswer {
                    response: seen.try_get("response")?,
                    document_id: seen.try_get("document_id")?,
                })
            } else {
                CreateOutcome::KeyReused
            });
        }
    }
    // One statement: count the document in, unless the collection is full.
    let counted = sqlx::query(
        "INSERT INTO collection_counts (user_id, collection, documents) VALUES ($1, $2, 1) \
         ON CONFLICT (user_id, collection) DO UPDATE SET documents = collection_counts.documents + 1 \
         WHERE collection_counts.documents < $3",
    )
    .bind(&doc.user_id)
    .bind(&doc.collection)
    .bind(doc.max_documents)
    .execute(&mut **tx)
    .await?;
    if counted.rows_affected() == 0 {
        return Ok(CreateOutcome::LimitReached);
    }
    let row = sqlx::query(&format!(
        "INSERT INTO documents (id, user_id, collection, data, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 1, $5, $5) RETURNING {COLUMNS}"
    ))
    .bind(&doc.id)
    .bind(&doc.user_id)
    .bind(&doc.collection)
    .bind(&doc.data)
    .bind(doc.now)
    .fetch_one(&mut **tx)
    .await?;
    let record = DocumentRecord::from_row(&row)?;
    if let Some(idem) = &doc.idempotency {
        let response = (idem.render)(&record);
        sqlx::query("INSERT INTO idempotency_keys (user_id, idem_key, request_hash, response, created_at, document_id) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&doc.user_id)
            .bind(&idem.key)
            .bind(idem.request_hash.clone())
            .bind(response)
            .bind(doc.now)
            .bind(&record.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(CreateOutcome::Created(record))
}

pub(super) async fn replace(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    collection: &str,
    id: &str,
    data: &str,
    if_version: Option<i64>,
    now: i64,
) -> Result<ReplaceOutcome> {
    let row = sqlx::query(&format!(
        "UPDATE documents SET data = $1, version = version + 1, updated_at = $2 \
         WHERE id = $3 AND user_id = $4 AND collection = $5 AND ($6 < 0 OR version = $6) RETURNING {COLUMNS}"
    ))
    .bind(data)
    .bind(now)
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .bind(if_version.unwrap_or(-1))
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = row {
        return Ok(ReplaceOutcome::Replaced(DocumentRecord::from_row(&row)?));
    }
    let exists = sqlx::query(
        "SELECT 1 AS one FROM documents WHERE id = $1 AND user_id = $2 AND collection = $3",
    )
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(if exists.is_some() {
        ReplaceOutcome::VersionMoved
    } else {
        ReplaceOutcome::NotFound
    })
}

pub(super) async fn delete(
    tx: &mut Transaction<'static, Any>,
    user_id: &str,
    collection: &str,
    id: &str,
) -> Result<bool> {
    let done =
        sqlx::query("DELETE FROM documents WHERE id = $1 AND user_id = $2 AND collection = $3")
            .bind(id)
            .bind(user_id)
            .bind(collection)
            .execute(&mut **tx)
            .await?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE collection_counts SET documents = documents - 1 WHERE user_id = $1 AND collection = $2")
        .bind(user_id)
        .bind(collection)
        .execute(&mut **tx)
        .await?;
    Ok(true)
}

/// Drops idempotency keys older than `before` (they only need to outlive retries).
pub(super) async fn expire_idempotency_keys(
    tx: &mut Transaction<'static, Any>,
    before: i64,
) -> Result<u64> {
    let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
        .bind(before)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

pub(super) async fn get(
    pool: &AnyPool,
    user_id: &str,
    collection: &str,
    id: &str,
) -> Result<Option<DocumentRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE id = $1 AND user_id = $2 AND collection = $3"
    ))
    .bind(id)
    .bind(user_id)
    .bind(collection)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(DocumentRecord::from_row).transpose()
}

/// Newest first: ids below `before` (all when None), at most `limit`.
pub(super) async fn list(
    pool: &AnyPool,
    user_id: &str,
    collection: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<DocumentRecord>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE user_id = $1 AND collection = $2 AND ($3 = '' OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(user_id)
    .bind(collection)
    .bind(before.unwrap_or(""))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(DocumentRecord::from_row).collect()
}
