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
    logging: bool,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        Self::new(true)
    }
}

impl ChangeFeed {
    /// A feed; `logging`: whether writes are logged at all (off, nothing
    /// is: realtime is disabled).
    pub(super) fn new(logging: bool) -> Self {
        Self {
            sender: broadcast::channel(1024).0,
            logging,
        }
    }

    /// Whether writes are logged (`realtime.enabled`).
    pub fn logging(&self) -> bool {
        self.logging
    }

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

/// The time a change is committed at (Unix ms): the machine's clock, as
/// `realtime.history_secs` trims by it.
pub(super) fn committed_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Rows of the change log written in one statement (12 values each).
const ROWS_PER_INSERT: usize = 64;

/// Records a batch's changes just before its commit: takes each
/// collection's next positions (collections in key order, so two
/// instances' batches never wait on each other in a cycle) and inserts the
/// changes with them. Answers the last position per collection.
///
/// On PostgreSQL, where each statement is a round trip, a collection's
/// positions and its rows are one statement (a data-modifying `WITH`);
/// SQLite runs the two in process.
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
    for ((appid, collection), changes) in by_collection {
        let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
        let (end, inserted) = if tx.chains_writes() {
            let end = positions_with_rows(tx, &appid, &collection, &changes, committed_at).await?;
            (end, changes.len())
        } else {
            (take_positions(tx, &appid, &collection, n).await?, 0)
        };
        let first = end - n + 1;
        let mut at = first + inserted as i64;
        for chunk in changes[inserted..].chunks(ROWS_PER_INSERT) {
            insert_rows(tx, at, chunk, committed_at).await?;
            at += chunk.len() as i64;
        }
        last.push(CommittedPosition {
            appid,
            collection,
            position: end,
        });
    }
    Ok(last)
}

const TAKE_POSITIONS: &str = "INSERT INTO change_positions (appid, collection, position) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (appid, collection) DO UPDATE SET position = change_positions.position + $3 \
     RETURNING position";

/// Takes `n` positions of a collection; answers the last.
async fn take_positions(tx: &mut Tx<'_>, appid: &str, collection: &str, n: i64) -> Result<i64> {
    let row = query(TAKE_POSITIONS)
        .bind(appid)
        .bind(collection)
        .bind(n)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| Error::internal("database: a change position was not returned"))?;
    row.try_get("position")
}

/// The values of one change row after its app, collection and position.
fn row_values(c: &Change, committed_at: i64) -> [Value; 9] {
    let fields = replaced_fields(c);
    [
        Value::from(c.doc_id.as_str()),
        Value::from(c.user_id.as_str()),
        Value::from(c.op.as_str()),
        Value::from(c.data.clone()),
        Value::from(fields),
        Value::from(c.version),
        Value::from(c.created_at),
        Value::from(c.updated_at),
        Value::from(committed_at),
    ]
}

/// `($a, $b, …)` for `count` placeholders from `$first`.
fn placeholders(first: usize, count: usize) -> String {
    let listed: Vec<String> = (first..first + count).map(|k| format!("${k}")).collect();
    format!("({})", listed.join(", "))
}

/// The row of `positions_with_rows`' JSON input.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    i: i64,
    doc_id: &'a str,
    user_id: &'a str,
    op: &'static str,
    data: Option<&'a str>,
    fields: Option<String>,
    version: i64,
    created_at: i64,
    updated_at: i64,
}

/// Takes `rows.len()` positions of a collection and inserts the rows with
/// them, in one statement (PostgreSQL); answers the last position. The rows
/// travel as one JSON parameter, so the statement's text is the same for
/// any number of them: prepared once, never planned again (planning a
/// statement of 16 rows of values cost as much as running it).
async fn positions_with_rows(
    tx: &mut Tx<'_>,
    appid: &str,
    collection: &str,
    rows: &[Change],
    committed_at: i64,
) -> Result<i64> {
    let n = i64::try_from(rows.len()).unwrap_or(i64::MAX);
    let input: Vec<JsonRow<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, c)| JsonRow {
            i: i as i64 + 1,
            doc_id: &c.doc_id,
            user_id: &c.user_id,
            op: c.op.as_str(),
            data: c.data.as_deref(),
            fields: replaced_fields(c),
            version: c.version,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
        .collect();
    let input = serde_json::to_string(&input).map_err(Error::internal)?;
    query(
        "WITH p AS (INSERT INTO change_positions (appid, collection, position) \
         VALUES ($1, $2, $3) \
         ON CONFLICT (appid, collection) DO UPDATE SET position = change_positions.position + $3 \
         RETURNING position), \
         ins AS (INSERT INTO changes (appid, collection, position, doc_id, user_id, op, data, \
         fields, version, created_at, updated_at, committed_at) \
         SELECT $1, $2, p.position - $3 + r.i, r.doc_id, r.user_id, r.op, r.data, r.fields, \
         r.version, r.created_at, r.updated_at, $5 FROM p, \
         json_to_recordset($4::json) AS r(i bigint, doc_id text, user_id text, op text, \
         data text, fields text, version bigint, created_at bigint, updated_at bigint)) \
         SELECT position FROM p",
    )
    .bind(appid)
    .bind(collection)
    .bind(n)
    .bind(input)
    .bind(committed_at)
    .fetch_optional(tx)
    .await?
    .ok_or_else(|| Error::internal("database: a change position was not returned"))?
    .try_get("position")
}

/// A replace's `fields` column: the top-level fields it set and removed.
fn replaced_fields(c: &Change) -> Option<String> {
    (c.op == ChangeOp::Replace)
        .then(|| serde_json::json!({"updated": c.updated, "removed": c.removed}).to_string())
}

/// Inserts change rows at positions `first`, `first + 1`, ….
async fn insert_rows(
    tx: &mut Tx<'_>,
    first: i64,
    rows: &[Change],
    committed_at: i64,
) -> Result<()> {
    let mut sql = String::from(
        "INSERT INTO changes (appid, collection, position, doc_id, user_id, op, data, fields, \
         version, created_at, updated_at, committed_at) VALUES ",
    );
    let mut args: Vec<Value> = Vec::with_capacity(rows.len() * 12);
    for (i, c) in rows.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&placeholders(args.len() + 1, 12));
        args.extend([
            Value::from(c.appid.as_str()),
            Value::from(c.collection.as_str()),
            Value::from(first + i as i64),
        ]);
        args.extend(row_values(c, committed_at));
    }
    let mut q = query(&sql);
    for a in args {
        q = q.bind(a);
    }
    q.execute(tx).await?;
    Ok(())
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
