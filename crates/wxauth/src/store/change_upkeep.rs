//! Keeping the change log small and clean without indexes beyond its key
//! (each secondary index cost every write another page; see migration
//! 0012): old changes are trimmed a collection at a time, walking its
//! positions, and a deleted account's past changes are scrubbed in the
//! background (their data and user id emptied; the rows stay, so positions
//! remain gapless and a watch still hears that the document changed).
//!
//! Both run as many short writes of at most [`POSITIONS_PER_STEP`]
//! positions, so the writer never holds other writes behind a long one.

use futures_util::future::BoxFuture;
use sqlx::Row;

use super::Store;
use super::exec::{Value, query};
use super::writer::{Tx, Write};
use crate::error::Result;

/// Positions one trimming or scrubbing write covers.
const POSITIONS_PER_STEP: i64 = 10_000;

/// Deleted accounts scrubbed in one pass at most.
const SCRUBS_PER_PASS: i64 = 200;

impl Store {
    /// Forgets changes committed before `before` (Unix ms); how many.
    /// Positions are taken in commit order, so a collection's old changes
    /// are the ones before its first recent one.
    pub async fn trim_changes(&self, before: i64) -> Result<u64> {
        let mut trimmed = 0;
        for (appid, collection, last) in self.logged_collections().await? {
            let Some(oldest) = self.oldest_change(&appid, &collection).await? else {
                continue;
            };
            let first_kept: Option<i64> = sqlx::query(
                "SELECT position FROM changes WHERE appid = $1 AND collection = $2 \
                 AND committed_at >= $3 ORDER BY position LIMIT 1",
            )
            .bind(&appid)
            .bind(&collection)
            .bind(before)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("position"))
            .transpose()?;
            let end = first_kept.unwrap_or(last + 1);
            let mut from = oldest;
            while from < end {
                let to = end.min(from.saturating_add(POSITIONS_PER_STEP));
                trimmed += self
                    .writer
                    .submit(TrimStep {
                        appid: appid.clone(),
                        collection: collection.clone(),
                        from,
                        to,
                    })
                    .await?;
                from = to;
            }
        }
        Ok(trimmed)
    }

    /// Scrubs the past changes of accounts deleted since the last pass
    /// (see `DeleteUser`); how many accounts were done. Several instances
    /// may run it at once: it is idempotent.
    pub async fn scrub_changes(&self) -> Result<usize> {
        let users: Vec<String> = sqlx::query("SELECT user_id FROM change_scrubs LIMIT $1")
            .bind(SCRUBS_PER_PASS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("user_id"))
            .collect::<std::result::Result<_, _>>()?;
        if users.is_empty() {
            return Ok(0);
        }
        // Every change of theirs was committed before their scrub was
        // asked for, so before the positions read now.
        for (appid, collection, last) in self.logged_collections().await? {
            let Some(oldest) = self.oldest_change(&appid, &collection).await? else {
                continue;
            };
            let mut from = oldest;
            while from <= last {
                let to = (last + 1).min(from.saturating_add(POSITIONS_PER_STEP));
                self.writer
                    .submit(ScrubStep {
                        appid: appid.clone(),
                        collection: collection.clone(),
                        from,
                        to,
                        users: users.clone(),
                    })
                    .await?;
                from = to;
            }
        }
        self.writer
            .submit(ScrubsDone {
                users: users.clone(),
            })
            .await?;
        Ok(users.len())
    }

    /// Every collection with a change log: (appid, collection, last
    /// position).
    async fn logged_collections(&self) -> Result<Vec<(String, String, i64)>> {
        sqlx::query("SELECT appid, collection, position FROM change_positions")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("appid")?,
                    r.try_get("collection")?,
                    r.try_get("position")?,
                ))
            })
            .collect()
    }
}

/// Deletes a collection's changes at positions `from..to`.
struct TrimStep {
    appid: String,
    collection: String,
    from: i64,
    to: i64,
}

impl Write for TrimStep {
    type Output = u64;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let done = query(
                "DELETE FROM changes WHERE appid = $1 AND collection = $2 \
                 AND position >= $3 AND position < $4",
            )
            .bind(self.appid.as_str())
            .bind(self.collection.as_str())
            .bind(self.from)
            .bind(self.to)
            .execute(tx)
            .await?;
            Ok(done.rows_affected())
        })
    }
}

/// Empties the data and user id of `users`' changes of a collection at
/// positions `from..to`.
struct ScrubStep {
    appid: String,
    collection: String,
    from: i64,
    to: i64,
    users: Vec<String>,
}

impl Write for ScrubStep {
    type Output = u64;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let listed: Vec<String> = (0..self.users.len())
                .map(|i| format!("${}", i + 5))
                .collect();
            let sql = format!(
                "UPDATE changes SET user_id = '', data = NULL, fields = NULL \
                 WHERE appid = $1 AND collection = $2 AND position >= $3 AND position < $4 \
                 AND user_id IN ({})",
                listed.join(", ")
            );
            let mut q = query(&sql)
                .bind(self.appid.as_str())
                .bind(self.collection.as_str())
                .bind(self.from)
                .bind(self.to);
            for u in &self.users {
                q = q.bind(Value::from(u.as_str()));
            }
            Ok(q.execute(tx).await?.rows_affected())
        })
    }
}

/// Forgets the scrubs done.
struct ScrubsDone {
    users: Vec<String>,
}

impl Write for ScrubsDone {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for u in &self.users {
                query("DELETE FROM change_scrubs WHERE user_id = $1")
                    .bind(u.as_str())
                    .execute(tx)
                    .await?;
            }
            Ok(())
        })
    }
}
