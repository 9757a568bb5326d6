//! A user's documents read from one snapshot of the database, page by
//! page: what an export streams. The pages share one read transaction
//! (SQLite: one WAL snapshot; PostgreSQL: `REPEATABLE READ`), so a write
//! that lands while the export runs is either wholly in it or not at all,
//! and no document is seen twice or skipped however long the export takes.
//! The transaction holds one pooled connection until the reader is dropped.

use sqlx::Row;

use super::rows::{COLUMNS, DocumentRecord};
use super::{Backend, Store};
use crate::error::Result;

/// Where a page of an export ends: documents are read by collection,
/// then oldest first (the `(user_id, collection, created_at, id)` index's
/// order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportPosition {
    /// The collection of the last document read.
    pub collection: String,
    /// Its creation time.
    pub created_at: i64,
    /// Its id.
    pub id: String,
}

impl ExportPosition {
    /// The position just after `record`.
    pub fn after(record: &DocumentRecord) -> Self {
        Self {
            collection: record.collection.clone(),
            created_at: record.created_at,
            id: record.id.clone(),
        }
    }
}

/// Reads one user's documents from a single snapshot.
pub struct SnapshotReader {
    tx: sqlx::Transaction<'static, sqlx::Any>,
}

impl std::fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotReader").finish_non_exhaustive()
    }
}

impl Store {
    /// A reader over one snapshot of the database.
    pub async fn snapshot(&self) -> Result<SnapshotReader> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(SnapshotReader { tx })
    }
}

impl SnapshotReader {
    /// How many documents the user holds, in this snapshot.
    pub async fn user_document_count(&mut self, user_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM documents WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// The next page of the user's documents after `after` (from the
    /// first when `None`), by collection and then oldest first. The row
    /// comparison is what both backends turn into an index range, so each
    /// page costs the same however far into a million documents it is.
    pub async fn user_documents(
        &mut self,
        user_id: &str,
        after: Option<&ExportPosition>,
        limit: i64,
    ) -> Result<Vec<DocumentRecord>> {
        let rows = match after {
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM documents WHERE user_id = $1 \
                     ORDER BY collection, created_at, id LIMIT $2"
                ))
                .bind(user_id)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?
            }
            Some(p) => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM documents WHERE user_id = $1 \
                     AND (collection, created_at, id) > ($2, $3, $4) \
                     ORDER BY collection, created_at, id LIMIT $5"
                ))
                .bind(user_id)
                .bind(&p.collection)
                .bind(p.created_at)
                .bind(&p.id)
                .bind(limit)
                .fetch_all(&mut *self.tx)
                .await?
            }
        };
        rows.iter().map(DocumentRecord::from_row).collect()
    }

    /// Ends the read (dropping the reader does the same).
    pub async fn finish(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}
