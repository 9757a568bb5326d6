//! Files' metadata: one row per stored file, written only once its bytes
//! are in the file store, with the owner's byte quota charged in the same
//! commit. The bytes themselves are the `blobs` room's.

use std::collections::HashSet;

use futures_util::future::BoxFuture;
use sqlx::Row as _;

use super::Store;
use super::exec::query;
use super::writer::{Tx, Write};
use crate::error::Result;

/// A stored file's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// UUIDv7; also the key of its bytes in the file store.
    pub id: String,
    /// The owner's user id.
    pub owner: String,
    /// The owner's app.
    pub appid: String,
    /// `avatar`, `image` or `attachment`.
    pub purpose: String,
    /// Whether its URL is stable and needs no signature.
    pub public: bool,
    /// Decided from the bytes.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// SHA-256 of the bytes, hex.
    pub sha256: String,
    /// The client's name for it, cleaned (a display name, never a path).
    pub filename: String,
    /// `ready`; for checked images `pending`, then `pass` or `rejected`.
    pub status: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// Ids looked up in one query by [`Store::known_file_ids`] (well under
/// SQLite's and PostgreSQL's parameter limits).
pub const IDS_PER_LOOKUP: usize = 500;

const FILE_COLUMNS: &str =
    "id, user_id, appid, purpose, public, content_type, size, sha256, filename, status, created_at";

impl FileRecord {
    fn from_any(row: &sqlx::any::AnyRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            owner: row.try_get("user_id")?,
            appid: row.try_get("appid")?,
            purpose: row.try_get("purpose")?,
            public: row.try_get::<i64, _>("public")? != 0,
            content_type: row.try_get("content_type")?,
            size: row.try_get("size")?,
            sha256: row.try_get("sha256")?,
            filename: row.try_get("filename")?,
            status: row.try_get("status")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// What storing a file's row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileInsert {
    /// Stored, the quota charged.
    Stored,
    /// The owner's files would pass their byte quota: nothing stored.
    OverQuota,
}

/// A file's row to store, charging `record.size` to its owner unless that
/// passes `bytes_per_user`.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// The row.
    pub record: FileRecord,
    /// The owner's byte quota for files.
    pub bytes_per_user: i64,
}

impl Write for NewFile {
    type Output = FileInsert;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<FileInsert>> {
        Box::pin(async move {
            let r = &self.record;
            if r.size > self.bytes_per_user {
                return Ok(FileInsert::OverQuota);
            }
            let charged = query(
                "INSERT INTO file_usage (user_id, bytes) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET bytes = file_usage.bytes + excluded.bytes \
                 WHERE file_usage.bytes + excluded.bytes <= $3",
            )
            .bind(&r.owner)
            .bind(r.size)
            .bind(self.bytes_per_user)
            .execute(tx)
            .await?;
            if charged.rows_affected() != 1 {
                return Ok(FileInsert::OverQuota);
            }
            query(&format!(
                "INSERT INTO files ({FILE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            ))
            .bind(&r.id)
            .bind(&r.owner)
            .bind(&r.appid)
            .bind(&r.purpose)
            .bind(i64::from(r.public))
            .bind(&r.content_type)
            .bind(r.size)
            .bind(&r.sha256)
            .bind(&r.filename)
            .bind(&r.status)
            .bind(r.created_at)
            .execute(tx)
            .await?;
            Ok(FileInsert::Stored)
        })
    }
}

/// Deletes one of `owner`'s files and gives its bytes back to the quota.
struct DeleteFile {
    owner: String,
    id: String,
}

impl Write for DeleteFile {
    type Output = bool;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let row =
                query("DELETE FROM files WHERE id = $1 AND user_id = $2 RETURNING size, status")
                    .bind(&self.id)
                    .bind(&self.owner)
                    .fetch_optional(tx)
                    .await?;
            let Some(row) = row else {
                return Ok(false);
            };
            // A rejected file's bytes were given back when it was rejected.
            let status: String = row.try_get("status")?;
            if status == "rejected" {
                return Ok(true);
            }
            let size: i64 = row.try_get("size")?;
            query("UPDATE file_usage SET bytes = bytes - $1 WHERE user_id = $2")
                .bind(size)
                .bind(&self.owner)
                .execute(tx)
                .await?;
            Ok(true)
        })
    }
}

/// A checked file's verdict: from `pending` to `pass`, or to `rejected`
/// with its bytes given back to the owner's quota.
struct SettleCheck {
    id: String,
    pass: bool,
}

impl Write for SettleCheck {
    type Output = bool;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let status = if self.pass { "pass" } else { "rejected" };
            let row = query(
                "UPDATE files SET status = $2 WHERE id = $1 AND status = 'pending' \
                 RETURNING size, user_id",
            )
            .bind(&self.id)
            .bind(status)
            .fetch_optional(tx)
            .await?;
            let Some(row) = row else {
                return Ok(false);
            };
            if !self.pass {
                let size: i64 = row.try_get("size")?;
                let owner: String = row.try_get("user_id")?;
                query("UPDATE file_usage SET bytes = bytes - $1 WHERE user_id = $2")
                    .bind(size)
                    .bind(&owner)
                    .execute(tx)
                    .await?;
            }
            Ok(true)
        })
    }
}

struct SetCheckTrace {
    id: String,
    trace: String,
}

impl Write for SetCheckTrace {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            query("UPDATE files SET check_trace = $2 WHERE id = $1")
                .bind(&self.id)
                .bind(&self.trace)
                .execute(tx)
                .await?;
            Ok(())
        })
    }
}

impl Store {
    /// Records the trace id of WeChat's check of file `id`.
    pub async fn set_file_check_trace(&self, id: &str, trace: &str) -> Result<()> {
        self.writer
            .submit(SetCheckTrace {
                id: id.to_owned(),
                trace: trace.to_owned(),
            })
            .await
    }

    /// The file whose check has trace id `trace`.
    pub async fn file_by_check_trace(&self, trace: &str) -> Result<Option<FileRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE check_trace = $1"
        ))
        .bind(trace)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(FileRecord::from_any).transpose()
    }

    /// Settles a pending file's check; false when it was not pending
    /// (already settled: a repeated verdict changes nothing).
    pub async fn settle_file_check(&self, id: &str, pass: bool) -> Result<bool> {
        self.writer
            .submit(SettleCheck {
                id: id.to_owned(),
                pass,
            })
            .await
    }

    /// Stores a file's row (its bytes are already in the file store).
    pub async fn insert_file(&self, file: NewFile) -> Result<FileInsert> {
        self.writer.submit(file).await
    }

    /// A file by id, whoever owns it.
    pub async fn file(&self, id: &str) -> Result<Option<FileRecord>> {
        let row = sqlx::query(&format!("SELECT {FILE_COLUMNS} FROM files WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(FileRecord::from_any).transpose()
    }

    /// `owner`'s files, newest first, after the `(created_at, id)` of the
    /// previous page's last.
    pub async fn user_files(
        &self,
        owner: &str,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<FileRecord>> {
        let (at, id) = before.unwrap_or((i64::MAX, ""));
        let rows = sqlx::query(&format!(
            "SELECT {FILE_COLUMNS} FROM files WHERE user_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3) OR $4 = 0) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(owner)
        .bind(at)
        .bind(id)
        .bind(i64::from(before.is_some()))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(FileRecord::from_any).collect()
    }

    /// Deletes one of `owner`'s files' rows; false when there is none.
    pub async fn delete_file(&self, owner: &str, id: &str) -> Result<bool> {
        self.writer
            .submit(DeleteFile {
                owner: owner.to_owned(),
                id: id.to_owned(),
            })
            .await
    }

    /// The ids of `owner`'s files (to delete their bytes with the account).
    pub async fn user_file_ids(&self, owner: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM files WHERE user_id = $1")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Which of `ids` have a file row (for the sweep of bytes without one);
    /// at most [`IDS_PER_LOOKUP`] at a time.
    pub async fn known_file_ids(&self, ids: &[String]) -> Result<HashSet<String>> {
        let rows = self
            .rows_in("SELECT id FROM files WHERE id IN ({in})", &[], ids)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// The files among `ids` (at most [`IDS_PER_LOOKUP`] a query).
    pub async fn files_by_id(&self, ids: &[String]) -> Result<Vec<FileRecord>> {
        let rows = self
            .rows_in(
                &format!("SELECT {FILE_COLUMNS} FROM files WHERE id IN ({{in}})"),
                &[],
                ids,
            )
            .await?;
        rows.iter().map(FileRecord::from_any).collect()
    }

    /// Up to `limit` file ids after `after`, in id order (for the backup
    /// of a file folder: every file a database copy knows).
    pub async fn file_ids_after(&self, after: &str, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM files WHERE id > $1 ORDER BY id LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Bytes `owner` keeps in files.
    pub async fn file_bytes(&self, owner: &str) -> Result<i64> {
        let row = sqlx::query("SELECT bytes FROM file_usage WHERE user_id = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get("bytes")?,
            None => 0,
        })
    }
}
