//! Reading and trimming the change log (see `changes`): what a watch's
//! tail reads after the last position it saw, and the age limit that
//! keeps the log small.

use serde_json::Value as Json;

use super::Store;
use super::changes::{Change, ChangeFeed, ChangeOp, CommittedPosition, LoggedChange};
use crate::error::{Error, Result};

/// Changes read back at most this many at a time.
pub const CHANGES_PER_READ: i64 = 1000;

impl Store {
    /// Hears this process's commits of changes.
    pub fn change_feed(&self) -> &ChangeFeed {
        &self.changes
    }

    /// The changes of a collection after `after`, oldest first, at most
    /// `limit`.
    pub async fn changes_after(
        &self,
        appid: &str,
        collection: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<LoggedChange>> {
        let rows = sqlx::query(
            "SELECT position, doc_id, user_id, op, data, fields, version, created_at, updated_at \
             FROM changes WHERE appid = $1 AND collection = $2 AND position > $3 \
             ORDER BY position LIMIT $4",
        )
        .bind(appid)
        .bind(collection)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                let fields: Option<String> = r.try_get("fields")?;
                let (updated, removed) = match fields {
                    Some(text) => {
                        let v: Json = serde_json::from_str(&text).map_err(Error::internal)?;
                        let names = |k: &str| -> Vec<String> {
                            v[k].as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|s| s.as_str().map(str::to_owned))
                                        .collect()
                                })
                                .unwrap_or_default()
                        };
                        (names("updated"), names("removed"))
                    }
                    None => (Vec::new(), Vec::new()),
                };
                Ok(LoggedChange {
                    position: r.try_get("position")?,
                    change: Change {
                        appid: appid.to_owned(),
                        collection: collection.to_owned(),
                        doc_id: r.try_get("doc_id")?,
                        user_id: r.try_get("user_id")?,
                        op: ChangeOp::parse(&r.try_get::<String, _>("op")?)?,
                        data: r.try_get("data")?,
                        updated,
                        removed,
                        version: r.try_get("version")?,
                        created_at: r.try_get("created_at")?,
                        updated_at: r.try_get("updated_at")?,
                    },
                })
            })
            .collect()
    }

    /// The last position of each of `collections` (of one app each); a
    /// collection never written is at 0.
    pub async fn change_positions(
        &self,
        collections: &[(String, String)],
    ) -> Result<Vec<CommittedPosition>> {
        let mut out = Vec::with_capacity(collections.len());
        for (appid, collection) in collections {
            use sqlx::Row;
            let row = sqlx::query(
                "SELECT position FROM change_positions WHERE appid = $1 AND collection = $2",
            )
            .bind(appid)
            .bind(collection)
            .fetch_optional(&self.pool)
            .await?;
            let position = match row {
                Some(r) => r.try_get("position")?,
                None => 0,
            };
            out.push(CommittedPosition {
                appid: appid.clone(),
                collection: collection.clone(),
                position,
            });
        }
        Ok(out)
    }

    /// The oldest position still held for a collection (a watcher resuming
    /// from before it gets a fresh `init`); None when none is held.
    pub async fn oldest_change(&self, appid: &str, collection: &str) -> Result<Option<i64>> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT MIN(position) AS oldest FROM changes WHERE appid = $1 AND collection = $2",
        )
        .bind(appid)
        .bind(collection)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("oldest")?)
    }
}
