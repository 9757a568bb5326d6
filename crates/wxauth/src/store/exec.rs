//! The statements of a write, written once for both databases and run
//! either through sqlx (PostgreSQL) or on the SQLite writer's own
//! connection (rusqlite).
//!
//! Why two drivers: sqlx runs each SQLite statement on a worker thread of
//! its own and hands every statement and every answer across threads. A
//! group commit of 15 logins is about 50 statements, each costing two
//! thread wake-ups (70 µs apiece on this project's 2-core machine, measured
//! in the writer), so the one task every write waits on spent most of its
//! time waiting for threads to be scheduled, with a third of the CPU idle.
//! The SQLite writer now owns one connection on its own thread and runs the
//! whole batch there without a hand-off; reads keep sqlx's pool.
//!
//! The builder mirrors sqlx's (`query(sql).bind(v).fetch_one(tx)`), and
//! `$N` placeholders mean the same on both: SQLite reads `$3` as a named
//! parameter, bound here by its number.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::any::AnyRow;
use sqlx::{Any, Row as _};

use crate::error::{Error, Result};

/// The transaction a write runs in, on either driver.
pub(super) type Tx<'c> = dyn Exec + 'c;

/// A value bound to a placeholder. NULLs carry their type: PostgreSQL
/// checks a parameter's declared type against its column even when NULL.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    NullText,
    NullBlob,
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        v.map_or(Value::NullText, Value::Text)
    }
}
impl From<Option<Vec<u8>>> for Value {
    fn from(v: Option<Vec<u8>>) -> Self {
        v.map_or(Value::NullBlob, Value::Blob)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

/// A row a statement returned.
pub(super) enum Row {
    Any(AnyRow),
    Sqlite(SqliteRow),
}

/// A row read by rusqlite: the statement's column names and the values.
pub(super) struct SqliteRow {
    columns: Arc<[String]>,
    values: Vec<rusqlite::types::Value>,
}

impl From<AnyRow> for Row {
    fn from(row: AnyRow) -> Self {
        Row::Any(row)
    }
}

impl Row {
    /// The column `name` as `T`.
    pub(super) fn try_get<T: Column>(&self, name: &str) -> Result<T> {
        match self {
            Row::Any(row) => T::from_any(row, name),
            Row::Sqlite(row) => {
                let at = row
                    .columns
                    .iter()
                    .position(|c| c == name)
                    .ok_or_else(|| Error::internal(format!("database: no column {name:?}")))?;
                T::from_sqlite(&row.values[at]).ok_or_else(|| {
                    Error::internal(format!(
                        "database: column {name:?} holds {:?}, not the type asked for",
                        row.values[at].data_type()
                    ))
                })
            }
        }
    }
}

/// A type a column can be read as, from either driver.
pub(super) trait Column: Sized {
    fn from_any(row: &AnyRow, name: &str) -> Result<Self>;
    fn from_sqlite(value: &rusqlite::types::Value) -> Option<Self>;
}

macro_rules! column {
    ($t:ty, $($pattern:pat => $value:expr),+) => {
        impl Column for $t {
            fn from_any(row: &AnyRow, name: &str) -> Result<Self> {
                Ok(row.try_get::<$t, _>(name)?)
            }
            fn from_sqlite(value: &rusqlite::types::Value) -> Option<Self> {
                use rusqlite::types::Value as V;
                match value {
                    $($pattern => $value,)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

column!(i64, V::Integer(i) => Some(*i));
column!(Option<i64>, V::Integer(i) => Some(Some(*i)), V::Null => Some(None));
column!(String, V::Text(s) => Some(s.clone()));
column!(Option<String>, V::Text(s) => Some(Some(s.clone())), V::Null => Some(None));
column!(Vec<u8>, V::Blob(b) => Some(b.clone()));
column!(Option<Vec<u8>>, V::Blob(b) => Some(Some(b.clone())), V::Null => Some(None));

/// What `execute` did.
pub(super) struct Done {
    rows_affected: u64,
}

impl Done {
    /// Rows inserted, changed or deleted.
    pub(super) fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// Runs statements inside the writer's transaction.
pub(super) trait Exec: Send {
    /// Whether one statement may write several tables (data-modifying
    /// `WITH`, PostgreSQL only): there each statement is a round trip to
    /// the server, so the hottest writes use one statement instead of three.
    fn chains_writes(&self) -> bool;
    /// Where a statement that writes its own changes into the change log
    /// says so (PostgreSQL's grouped creates); None where none does.
    fn logged(&mut self) -> Option<&mut Logged> {
        None
    }
    fn execute<'a>(&'a mut self, sql: &'a str, args: Vec<Value>) -> BoxFuture<'a, Result<Done>>;
    fn fetch_optional<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Option<Row>>>;
    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Vec<Row>>>;
}

/// A statement and its arguments: `query(sql).bind(a).bind(b)`.
pub(super) struct Query<'q> {
    sql: &'q str,
    args: Vec<Value>,
}

/// A statement to run in a write's transaction.
pub(super) fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

impl<'q> Query<'q> {
    /// Binds the next placeholder (`$1`, then `$2`, …).
    pub(super) fn bind(mut self, value: impl Into<Value>) -> Self {
        self.args.push(value.into());
        self
    }

    pub(super) async fn execute(self, tx: &mut Tx<'_>) -> Result<Done> {
        tx.execute(self.sql, self.args).await
    }

    pub(super) async fn fetch_optional(self, tx: &mut Tx<'_>) -> Result<Option<Row>> {
        tx.fetch_optional(self.sql, self.args).await
    }

    pub(super) async fn fetch_one(self, tx: &mut Tx<'_>) -> Result<Row> {
        tx.fetch_optional(self.sql, self.args)
            .await?
            .ok_or_else(|| Error::internal("database: a statement returned no row"))
    }

    pub(super) async fn fetch_all(self, tx: &mut Tx<'_>) -> Result<Vec<Row>> {
        tx.fetch_all(self.sql, self.args).await
    }
}

/// The PostgreSQL writer's connection inside a transaction it began (the
/// writer sends BEGIN and COMMIT itself; see `writer`), and the changes its
/// statements logged themselves (`Logged`).
pub(super) struct SqlxTx<'c>(pub(super) &'c mut sqlx::AnyConnection, pub(super) Logged);

pub(super) fn sqlx_query(
    sql: &str,
    args: Vec<Value>,
) -> sqlx::query::Query<'_, Any, sqlx::any::AnyArguments<'_>> {
    let mut q = sqlx::query(sql);
    for arg in args {
        q = match arg {
            Value::Int(v) => q.bind(v),
            Value::Real(v) => q.bind(v),
            Value::Text(v) => q.bind(v),
            Value::Blob(v) => q.bind(v),
            Value::NullText => q.bind(None::<String>),
            Value::NullBlob => q.bind(None::<Vec<u8>>),
        };
    }
    q
}

impl Exec for SqlxTx<'_> {
    fn chains_writes(&self) -> bool {
        true // only PostgreSQL's writer uses sqlx
    }

    fn logged(&mut self) -> Option<&mut Logged> {
        self.1.on.then_some(&mut self.1)
    }

    fn execute<'a>(&'a mut self, sql: &'a str, args: Vec<Value>) -> BoxFuture<'a, Result<Done>> {
        Box::pin(async move {
            let done = sqlx_query(sql, args).execute(&mut *self.0).await?;
            Ok(Done {
                rows_affected: done.rows_affected(),
            })
        })
    }

    fn fetch_optional<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Option<Row>>> {
        Box::pin(async move {
            Ok(sqlx_query(sql, args)
                .fetch_optional(&mut *self.0)
                .await?
                .map(Row::Any))
        })
    }

    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        Box::pin(async move {
            Ok(sqlx_query(sql, args)
                .fetch_all(&mut *self.0)
                .await?
                .into_iter()
                .map(Row::Any)
                .collect())
        })
    }
}

/// The SQLite writer's connection inside `BEGIN IMMEDIATE … COMMIT`. Every
/// statement runs at once on the calling thread; its futures are ready
/// when made.
pub(super) struct SqliteTx<'c>(pub(super) &'c mut rusqlite::Connection);

fn sqlite_error(e: rusqlite::Error) -> Error {
    Error::internal_from("database", e)
}

/// Prepares `sql` (from the connection's cache) with `args` bound by their
/// placeholders' numbers.
/// The statement as SQLite reads it fastest: each `$N` as `?N`. SQLite
/// looks a named parameter (`$N`) up among those already seen, both when
/// preparing and when asked a parameter's name, so a statement with
/// thousands of them (an import's batch insert) cost time quadratic in
/// their number: half the writer's time in one profile. A numbered `?N`
/// is simply parameter N. (`$` followed by a digit only; JSON paths such
/// as `'$.a'` and `'$[0]'` are left alone.)
fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    let bytes = sql.as_bytes();
    let is_placeholder = |i: usize| {
        bytes[i] == b'$'
            && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'))
    };
    if !(0..bytes.len()).any(is_placeholder) {
        return std::borrow::Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len());
    let mut last = 0;
    for i in 0..bytes.len() {
        if is_placeholder(i) {
            out.push_str(&sql[last..i]);
            out.push('?');
            last = i + 1;
        }
    }
    out.push_str(&sql[last..]);
    std::borrow::Cow::Owned(out)
}

fn prepare<'c>(
    conn: &'c rusqlite::Connection,
    sql: &str,
    args: &[Value],
) -> Result<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(&numbered(sql)).map_err(sqlite_error)?;
    // `?N` is parameter N.
    for at in 1..=statement.parameter_count() {
        let number = at;
        let value = args.get(number - 1).ok_or_else(|| {
            Error::internal(format!("database: no argument for placeholder ${number}"))
        })?;
        let result = match value {
            Value::Int(v) => statement.raw_bind_parameter(at, v),
            Value::Real(v) => statement.raw_bind_parameter(at, v),
            Value::Text(v) => statement.raw_bind_parameter(at, v),
            Value::Blob(v) => statement.raw_bind_parameter(at, v),
            Value::NullText | Value::NullBlob => {
                statement.raw_bind_parameter(at, rusqlite::types::Null)
            }
        };
        result.map_err(sqlite_error)?;
    }
    Ok(statement)
}

impl SqliteTx<'_> {
    pub(super) fn rows(&mut self, sql: &str, args: &[Value], at_most: usize) -> Result<Vec<Row>> {
        let mut statement = prepare(self.0, sql, args)?;
        let columns: Arc<[String]> = statement
            .column_names()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sqlite_error)? {
            if out.len() < at_most {
                let values = (0..columns.len())
                    .map(|i| row.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
                    .map_err(sqlite_error)?;
                out.push(Row::Sqlite(SqliteRow {
                    columns: columns.clone(),
                    values,
                }));
            }
            // Stepping on runs the statement to its end (an UPDATE …
            // RETURNING changes every row it matches).
        }
        Ok(out)
    }
}

impl Exec for SqliteTx<'_> {
    fn chains_writes(&self) -> bool {
        false
    }

    fn execute<'a>(&'a mut self, sql: &'a str, args: Vec<Value>) -> BoxFuture<'a, Result<Done>> {
        let result = self.rows(sql, &args, 0).map(|_| Done {
            rows_affected: self.0.changes(),
        });
        Box::pin(std::future::ready(result))
    }

    fn fetch_optional<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Option<Row>>> {
        let result = self.rows(sql, &args, 1).map(|rows| rows.into_iter().next());
        Box::pin(std::future::ready(result))
    }

    fn fetch_all<'a>(
        &'a mut self,
        sql: &'a str,
        args: Vec<Value>,
    ) -> BoxFuture<'a, Result<Vec<Row>>> {
        let result = self.rows(sql, &args, usize::MAX);
        Box::pin(std::future::ready(result))
    }
}

/// Reads columns by name from either kind of row, so a record's
/// `from_row` serves reads (sqlx) and writes (either driver) alike.
pub(super) trait Fields {
    fn field<T: Column>(&self, name: &str) -> Result<T>;
}

impl Fields for AnyRow {
    fn field<T: Column>(&self, name: &str) -> Result<T> {
        T::from_any(self, name)
    }
}

impl Fields for Row {
    fn field<T: Column>(&self, name: &str) -> Result<T> {
        self.try_get(name)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    /// SQLite statements run inline: their futures are ready when made.
    fn now<T>(f: impl std::future::Future<Output = T>) -> T {
        match f.now_or_never() {
            Some(v) => v,
            None => unreachable!("a SQLite statement's future was pending"),
        }
    }

    #[test]
    fn placeholders_become_numbered_and_json_paths_stay() {
        assert_eq!(
            numbered(
                "SELECT json_extract(data, '$.a'), '$[0]', x$1 FROM t WHERE a = $1 AND b IN ($12, $3)"
            ),
            "SELECT json_extract(data, '$.a'), '$[0]', x$1 FROM t WHERE a = ?1 AND b IN (?12, ?3)"
        );
        assert!(matches!(
            numbered("SELECT 1"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn sqlite_binds_placeholders_by_number_and_counts_changes() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB, d TEXT)")
            .unwrap();
        let tx: &mut Tx<'_> = &mut SqliteTx(&mut conn);
        // Out of order and repeated, as `$1` is in the refresh rotation.
        let done = now(query(
            "INSERT INTO t (b, a, c, d) VALUES ($2, $1, $3, $4), ($2, $1 + 1, $3, $4)",
        )
        .bind(7)
        .bind("seven")
        .bind(vec![1u8, 2])
        .bind(None::<String>)
        .execute(tx))
        .unwrap();
        assert_eq!(done.rows_affected(), 2);
        let rows = now(query("SELECT a, b, c, d FROM t WHERE b = $1 ORDER BY a")
            .bind("seven")
            .fetch_all(tx))
        .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].try_get::<i64>("a").unwrap(), 8);
        assert_eq!(rows[0].try_get::<Vec<u8>>("c").unwrap(), vec![1, 2]);
        assert_eq!(rows[0].try_get::<Option<String>>("d").unwrap(), None);
        assert!(
            rows[0].try_get::<String>("a").is_err(),
            "an integer is not text"
        );
        assert!(rows[0].try_get::<i64>("nope").is_err());
        // An UPDATE … RETURNING runs to its end whatever is read of it.
        let first = now(query("UPDATE t SET d = 'x' RETURNING a").fetch_optional(tx)).unwrap();
        assert!(first.is_some());
        assert_eq!(
            now(query("SELECT COUNT(*) AS n FROM t WHERE d = 'x'").fetch_one(tx))
                .unwrap()
                .try_get::<i64>("n")
                .unwrap(),
            2
        );
        assert!(
            now(query("SELECT a FROM t WHERE a = $1")
                .bind(99)
                .fetch_optional(tx))
            .unwrap()
            .is_none()
        );
        assert!(
            now(query("SELECT a FROM t WHERE a = $1").fetch_all(tx)).is_err(),
            "a placeholder without its argument"
        );
    }
}

/// Changes that a write's own statement logged (PostgreSQL's grouped
/// creates, which save the change log a statement of its own): their
/// documents, and the last position taken in each collection.
#[derive(Debug, Default)]
pub(super) struct Logged {
    /// Whether the change log is kept at all (`realtime.enabled`).
    pub(super) on: bool,
    /// The created documents whose change is logged.
    pub(super) docs: std::collections::HashSet<String>,
    /// (appid, collection) → the last position taken.
    pub(super) positions: std::collections::BTreeMap<(String, String), i64>,
}

impl Logged {
    pub(super) fn new(on: bool) -> Self {
        Self {
            on,
            ..Self::default()
        }
    }

    /// Notes a document whose change a statement logged at `position`.
    pub(super) fn add(&mut self, appid: &str, collection: &str, doc_id: &str, position: i64) {
        self.docs.insert(doc_id.to_owned());
        let last = self
            .positions
            .entry((appid.to_owned(), collection.to_owned()))
            .or_insert(position);
        *last = (*last).max(position);
    }
}
