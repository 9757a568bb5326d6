//! The change log of documents (realtime watches, issue 31): every write
//! to a document is recorded in the transaction that makes it, numbered in
//! commit order per collection of an app, and this process hears of each
//! commit at once ([`ChangeFeed`]); other instances hear through Redis or
//! find it when they look (`Store::change_positions`).
//!
//! Positions come from `change_positions`, one row per (app, collection),
//! taken by the group-commit writer just before it commits, in key order
//! (no deadlock between instances): the row stays locked until the commit,
//! so a position is visible only after every smaller one of its collection
//! is. A reader never waits for a gap, and a watcher that saw position N
//! misses nothing by asking for what comes after N.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value as Json};
use tokio::sync::broadcast;

use super::exec::{Tx, Value, query};
use crate::error::{Error, Result};

/// What a write did to a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// Created.
    Create,
    /// Its data replaced.
    Replace,
    /// Deleted.
    Delete,
}

impl ChangeOp {
    fn as_str(self) -> &'static str {
        match self {
            ChangeOp::Create => "create",
            ChangeOp::Replace => "replace",
            ChangeOp::Delete => "delete",
        }
    }

    pub(super) fn parse(text: &str) -> Result<Self> {
        match text {
            "create" => Ok(ChangeOp::Create),
            "replace" => Ok(ChangeOp::Replace),
            "delete" => Ok(ChangeOp::Delete),
            other => Err(Error::internal(format!("database: change op {other:?}"))),
        }
    }
}

/// A write to a document, as a watch sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The owner's app.
    pub appid: String,
    /// The collection.
    pub collection: String,
    /// The document.
    pub doc_id: String,
    /// Its owner.
    pub user_id: String,
    /// What happened.
    pub op: ChangeOp,
    /// The document's data after the write (None for a delete).
    pub data: Option<String>,
    /// For a replace: the top-level fields it set (added or changed).
    pub updated: Vec<String>,
    /// For a replace: the top-level fields it removed.
    pub removed: Vec<String>,
    /// The version after the write (a delete: the last one).
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// A change with its place in its collection's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedChange {
    /// 1, 2, 3… per (app, collection), in commit order, without gaps.
    pub position: i64,
    /// The change.
    pub change: Change,
}

/// The last position a commit wrote in one collection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommittedPosition {
    /// The app.
    pub appid: String,
    /// The collection.
    pub collection: String,
    /// The last position the commit took there.
    pub position: i64,
}

/// The top-level fields a replace set and removed: what a watch reports as
/// `updated_fields` and `removed_fields`.
pub fn changed_fields(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
    let parse = |text: &str| serde_json::from_str::<Map<String, Json>>(text).unwrap_or_default();
    let (before, after) = (parse(before), parse(after));
    let updated = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    let removed = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    (updated, removed)
}

/// This process's commits of changes, heard as they happen: each message
/// is one commit's last positions. A receiver that lags behind loses
/// messages (`RecvError::Lagged`) and must look in the store instead.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Arc<Vec<CommittedPosition>>>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(1024).0,
        }
    }
}

impl ChangeFeed {
    /// Hears every commit from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<CommittedPosition>>> {
        self.sender.subscribe()
    }

    pub(super) fn committed(&self, positions: Vec<CommittedPosition>) {
        if !positions.is_empty() {
            // No receiver is fine: nobody watches.
            let _ = self.sender.send(Arc::new(positions));
        }
    }
}

/// Rows of the change log written in one statement (12 values each).
const ROWS_PER_INSERT: usize = 64;

/// Records a batch's changes just before its commit: takes each
/// collection's next positions (collections in key order, so two
/// instances' batches never wait on each other in a cycle) and inserts the
/// changes with them. Answers the last position per collection.
pub(super) async fn record(
    tx: &mut Tx<'_>,
    changes: Vec<Change>,
    committed_at: i64,
) -> Result<Vec<CommittedPosition>> {
    let mut by_collection: BTreeMap<(String, String), Vec<Change>> = BTreeMap::new();
    for c in changes {
        by_collection
            .entry((c.appid.clone(), c.collection.clone()))
            .or_default()
            .push(c);
    }
    let mut last = Vec::with_capacity(by_collection.len());
    let mut rows: Vec<(i64, Change)> = Vec::new();
    for ((appid, collection), changes) in by_collection {
        let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
        let row = query(
            "INSERT INTO change_positions (appid, collection, position) VALUES ($1, $2, $3) \
             ON CONFLICT (appid, collection) DO UPDATE SET position = change_positions.position + $3 \
             RETURNING position",
        )
        .bind(&appid)
        .bind(&collection)
        .bind(n)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| Error::internal("database: a change position was not returned"))?;
        let end: i64 = row.try_get("position")?;
        let first = end - n + 1;
        rows.extend(
            changes
                .into_iter()
                .enumerate()
                .map(|(i, c)| (first + i as i64, c)),
        );
        last.push(CommittedPosition {
            appid,
            collection,
            position: end,
        });
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO changes (appid, collection, position, doc_id, user_id, op, data, fields, \
             version, created_at, updated_at, committed_at) VALUES ",
        );
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 12);
        for (i, (position, c)) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let base = i * 12;
            sql.push('(');
            for k in 1..=12 {
                if k > 1 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("${}", base + k));
            }
            sql.push(')');
            let fields = (c.op == ChangeOp::Replace).then(|| {
                serde_json::json!({"updated": c.updated, "removed": c.removed}).to_string()
            });
            args.extend([
                Value::from(c.appid.as_str()),
                Value::from(c.collection.as_str()),
                Value::from(*position),
                Value::from(c.doc_id.as_str()),
                Value::from(c.user_id.as_str()),
                Value::from(c.op.as_str()),
                Value::from(c.data.clone()),
                Value::from(fields),
                Value::from(c.version),
                Value::from(c.created_at),
                Value::from(c.updated_at),
                Value::from(committed_at),
            ]);
        }
        let mut q = query(&sql);
        for a in args {
            q = q.bind(a);
        }
        q.execute(tx).await?;
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replace_names_the_fields_it_set_and_removed() {
        let (updated, removed) = changed_fields(
            r#"{"a": 1, "b": {"x": 1}, "c": "same", "gone": true}"#,
            r#"{"a": 2, "b": {"x": 1}, "c": "same", "new": null}"#,
        );
        assert_eq!(updated, ["a", "new"]);
        assert_eq!(removed, ["gone"]);
    }
}
