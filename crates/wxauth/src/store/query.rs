//! Queries over documents' JSON: the store's query language and its SQL.
//!
//! One model, two compilers, the same answers. Every JSON value a field can
//! hold falls in a *rank* (missing 0, null 1, false 2, true 3, number 4,
//! string 5, array 6, object 7); numbers and strings also have a value.
//! Conditions compare rank and value together, so a number never equals a
//! string and a type mismatch matches nothing; sorting is by rank, then
//! value, then the document id. Numbers compare as IEEE doubles (what a
//! mini program's JavaScript holds), strings bytewise (UTF-8; `COLLATE "C"`
//! on PostgreSQL, whatever the database's locale). PostgreSQL reads paths
//! from `data_json`, a stored generated jsonb twin of `data` (migration
//! 0006), SQLite from the text with its JSON functions.
//!
//! Field paths are checked (`[A-Za-z0-9_]` segments, not all digits)
//! before they reach this module and are the only text spliced into SQL,
//! with the collection name (`[a-z0-9_-]`): the planner needs both as
//! literals to match expression and partial indexes. Every value is a
//! bound parameter.

use std::fmt::Write as _;

use serde_json::Number;
use sqlx::Row;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::rows::{COLUMNS, DocumentRecord};
use super::{Backend, Store};
use crate::error::Result;
pub use crate::vocab::query::{
    After, Field, Filter, IndexSpec, KeyValue, Op, Scalar, Scope, SortKey, parse_path,
};

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
enum Bind {
    Text(String),
    Int(i64),
    Float(f64),
}

/// SQL text and its parameters, built together.
struct Sql {
    backend: Backend,
    text: String,
    binds: Vec<Bind>,
}

impl Sql {
    fn new(backend: Backend) -> Self {
        Self {
            backend,
            text: String::with_capacity(512),
            binds: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) {
        self.text.push_str(s);
    }

    fn bind(&mut self, b: Bind) {
        self.binds.push(b);
        let _ = write!(self.text, "${}", self.binds.len());
    }

    /// A number as each backend compares it.
    fn bind_number(&mut self, n: &Number) {
        match self.backend {
            Backend::Sqlite => match n.as_i64() {
                Some(i) => self.bind(Bind::Int(i)),
                None => self.bind(Bind::Float(n.as_f64().unwrap_or(f64::NAN))),
            },
            Backend::Postgres => {
                self.bind(Bind::Text(n.to_string()));
                self.push("::float8");
            }
        }
    }

    fn bind_scalar_value(&mut self, s: &Scalar) {
        match s {
            Scalar::Number(n) => self.bind_number(n),
            Scalar::Text(t) => self.bind(Bind::Text(t.clone())),
            // Other ranks carry no value; never called for them.
            Scalar::Null | Scalar::Bool(_) => self.push("NULL"),
        }
    }

    /// The text and its arguments, for either driver.
    fn into_parts(self) -> (String, Vec<super::exec::Value>) {
        let args = self
            .binds
            .into_iter()
            .map(|b| match b {
                Bind::Text(t) => super::exec::Value::Text(t),
                Bind::Int(i) => super::exec::Value::Int(i),
                Bind::Float(f) => super::exec::Value::Real(f),
            })
            .collect();
        (self.text, args)
    }

    fn query(&self) -> Query<'_, sqlx::Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::Text(t) => q.bind(t.as_str()),
                Bind::Int(i) => q.bind(*i),
                Bind::Float(f) => q.bind(*f),
            };
        }
        q
    }
}

/// The SQL expressions of one data path on one backend.
struct PathSql {
    /// The rank (0 to 7), never NULL.
    rank: String,
    /// SQLite: the number or string; PostgreSQL: the number (float8).
    number: String,
    /// PostgreSQL only: the string, `COLLATE "C"`.
    text: Option<String>,
}

fn path_sql(backend: Backend, path: &[String]) -> PathSql {
    match backend {
        Backend::Sqlite => {
            let p = format!("'$.{}'", path.join("."));
            PathSql {
                rank: format!(
                    "(CASE json_type(data, {p}) WHEN 'null' THEN 1 WHEN 'false' THEN 2 WHEN 'true' THEN 3 \
                     WHEN 'integer' THEN 4 WHEN 'real' THEN 4 WHEN 'text' THEN 5 WHEN 'array' THEN 6 \
                     WHEN 'object' THEN 7 ELSE 0 END)"
                ),
                number: format!(
                    "(CASE WHEN json_type(data, {p}) IN ('integer', 'real', 'text') THEN json_extract(data, {p}) END)"
                ),
                text: None,
            }
        }
        Backend::Postgres => {
            // Each element double-quoted: unquoted, an element spelled
            // `null` (any case) is a SQL NULL in an array literal, and the
            // path would never match.
            let quoted: Vec<String> = path.iter().map(|s| format!("\"{s}\"")).collect();
            let j = format!("(data_json #> '{{{}}}')", quoted.join(","));
            PathSql {
                rank: format!(
                    "(CASE jsonb_typeof({j}) WHEN 'null' THEN 1 WHEN 'boolean' THEN \
                     (CASE WHEN {j} = 'true'::jsonb THEN 3 ELSE 2 END) WHEN 'number' THEN 4 \
                     WHEN 'string' THEN 5 WHEN 'array' THEN 6 WHEN 'object' THEN 7 ELSE 0 END)"
                ),
                // 0 and '' (not NULL) for the other types: a condition pins
                // the other column with an equality, which PostgreSQL can
                // drop from an index's order (IS NULL it cannot), so an
                // equality reads the index in (created_at, id) order.
                number: format!(
                    "(CASE WHEN jsonb_typeof({j}) = 'number' THEN ({j} #>> '{{}}')::float8 ELSE 0 END)"
                ),
                text: Some(format!(
                    "((CASE WHEN jsonb_typeof({j}) = 'string' THEN {j} #>> '{{}}' ELSE '' END) COLLATE \"C\")"
                )),
            }
        }
    }
}

impl PathSql {
    /// The value expression for a rank with a value (4 or 5). On
    /// PostgreSQL the other value column is pinned to its constant (0 or
    /// ''), so a btree over (rank, number, text, created_at, id) is entered
    /// at the value and read in creation order.
    fn value_for(&self, rank: u8, sql: &mut Sql) -> String {
        match (&self.text, rank) {
            (Some(text), 5) => {
                sql.push(&self.number);
                sql.push(" = 0 AND ");
                text.clone()
            }
            (Some(text), _) => {
                sql.push(text);
                sql.push(" = '' AND ");
                self.number.clone()
            }
            _ => self.number.clone(),
        }
    }
}

/// The column of a built-in field and whether it holds text.
fn column(field: &Field) -> Option<(&'static str, bool)> {
    match field {
        Field::Id => Some(("id", true)),
        Field::Owner => Some(("user_id", true)),
        Field::CreatedAt => Some(("created_at", false)),
        Field::UpdatedAt => Some(("updated_at", false)),
        Field::Data(_) => None,
    }
}

/// Whether a literal has the type of a built-in column (a mismatch matches
/// nothing, as for data fields).
fn column_accepts(is_text: bool, value: &Scalar) -> bool {
    match value {
        Scalar::Text(_) => is_text,
        Scalar::Number(n) => !is_text && n.as_i64().is_some(),
        _ => false,
    }
}

fn bind_column_value(sql: &mut Sql, value: &Scalar) {
    match value {
        Scalar::Text(t) => sql.bind(Bind::Text(t.clone())),
        Scalar::Number(n) => sql.bind(Bind::Int(n.as_i64().unwrap_or(0))),
        _ => sql.push("NULL"),
    }
}

/// `field = value` as SQL that is never NULL.
fn equals(sql: &mut Sql, field: &Field, value: &Scalar) {
    if let Some((col, is_text)) = column(field) {
        if column_accepts(is_text, value) {
            let _ = write!(sql.text, "{col} = ");
            bind_column_value(sql, value);
        } else {
            sql.push("1 = 0");
        }
        return;
    }
    let Field::Data(path) = field else { return };
    let p = path_sql(sql.backend, path);
    let rank = value.rank();
    let _ = write!(sql.text, "({} = {rank}", p.rank);
    if matches!(value, Scalar::Number(_) | Scalar::Text(_)) {
        sql.push(" AND ");
        let v = p.value_for(rank, sql);
        let _ = write!(sql.text, "{v} = ");
        sql.bind_scalar_value(value);
    }
    sql.push(")");
}

fn compile(sql: &mut Sql, filter: &Filter) {
    match filter {
        Filter::All(parts) | Filter::Any(parts) if parts.is_empty() => {
            sql.push(if matches!(filter, Filter::All(_)) {
                "1 = 1"
            } else {
                "1 = 0"
            });
        }
        Filter::All(parts) | Filter::Any(parts) => {
            let joiner = if matches!(filter, Filter::All(_)) {
                " AND "
            } else {
                " OR "
            };
            sql.push("(");
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(joiner);
                }
                compile(sql, part);
            }
            sql.push(")");
        }
        Filter::Compare(field, Op::Eq, value) => equals(sql, field, value),
        Filter::Compare(field, Op::Ne, value) => {
            sql.push("NOT ");
            equals(sql, field, value);
        }
        Filter::Compare(field, op, value) => {
            if let Some((col, is_text)) = column(field) {
                if column_accepts(is_text, value) {
                    let _ = write!(sql.text, "{col} {} ", op.sql());
                    bind_column_value(sql, value);
                } else {
                    sql.push("1 = 0");
                }
                return;
            }
            let Field::Data(path) = field else { return };
            let rank = value.rank();
            if !matches!(value, Scalar::Number(_) | Scalar::Text(_)) {
                // Only numbers and strings are ordered; refused earlier.
                sql.push("1 = 0");
                return;
            }
            let p = path_sql(sql.backend, path);
            let _ = write!(sql.text, "({} = {rank} AND ", p.rank);
            let v = p.value_for(rank, sql);
            let _ = write!(sql.text, "{v} {} ", op.sql());
            sql.bind_scalar_value(value);
            sql.push(")");
        }
        Filter::In(field, values, negated) => {
            if *negated {
                sql.push("NOT ");
            }
            sql.push("(");
            if values.is_empty() {
                sql.push("1 = 0");
            }
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    sql.push(" OR ");
                }
                equals(sql, field, v);
            }
            sql.push(")");
        }
        Filter::Exists(field, exists) => match field {
            Field::Data(path) => {
                let p = path_sql(sql.backend, path);
                let _ = write!(
                    sql.text,
                    "{} {} 0",
                    p.rank,
                    if *exists { "<>" } else { "=" }
                );
            }
            // Built-in fields always exist.
            _ => sql.push(if *exists { "1 = 1" } else { "1 = 0" }),
        },
    }
}

fn scope_sql(sql: &mut Sql, scope: &Scope) {
    let (column, who, collection) = scope.parts();
    let _ = write!(sql.text, "{column} = ");
    sql.bind(Bind::Text(who.to_owned()));
    // A literal, so partial indexes (`WHERE collection = '…'`) apply.
    let _ = write!(sql.text, " AND collection = '{}'", literal(collection));
}

/// Collection names are checked (`[a-z0-9_-]`); quotes are doubled anyway.
fn literal(text: &str) -> String {
    text.replace('\'', "''")
}

/// The ORDER BY terms of one key.
fn order_terms(backend: Backend, key: &SortKey) -> Vec<String> {
    let dir = if key.descending { " DESC" } else { "" };
    match column(&key.field) {
        Some((col, _)) => vec![format!("{col}{dir}")],
        None => {
            let Field::Data(path) = &key.field else {
                return Vec::new();
            };
            let p = path_sql(backend, path);
            let mut terms = vec![format!("{}{dir}", p.rank), format!("{}{dir}", p.number)];
            if let Some(text) = p.text {
                terms.push(format!("{text}{dir}"));
            }
            terms
        }
    }
}

/// `key is beyond value` (strictly, in the key's direction) or `key equals value`.
fn key_compare(sql: &mut Sql, key: &SortKey, value: &KeyValue, strict: bool) {
    let gt = if key.descending { "<" } else { ">" };
    match (column(&key.field), value) {
        (Some((col, _)), KeyValue::Text(t)) => {
            let _ = write!(sql.text, "{col} {} ", if strict { gt } else { "=" });
            sql.bind(Bind::Text(t.clone()));
        }
        (Some((col, _)), KeyValue::Millis(ms)) => {
            let _ = write!(sql.text, "{col} {} ", if strict { gt } else { "=" });
            sql.bind(Bind::Int(*ms));
        }
        (None, KeyValue::Ranked(rank, v)) => {
            let Field::Data(path) = &key.field else {
                return;
            };
            let p = path_sql(sql.backend, path);
            match v {
                Some(v) if strict => {
                    let _ = write!(
                        sql.text,
                        "({} {gt} {rank} OR ({} = {rank} AND ",
                        p.rank, p.rank
                    );
                    let e = p.value_for(*rank, sql);
                    let _ = write!(sql.text, "{e} {gt} ");
                    sql.bind_scalar_value(v);
                    sql.push("))");
                }
                Some(v) => {
                    let _ = write!(sql.text, "({} = {rank} AND ", p.rank);
                    let e = p.value_for(*rank, sql);
                    let _ = write!(sql.text, "{e} = ");
                    sql.bind_scalar_value(v);
                    sql.push(")");
                }
                None => {
                    let _ = write!(
                        sql.text,
                        "{} {} {rank}",
                        p.rank,
                        if strict { gt } else { "=" }
                    );
                }
            }
        }
        // A cursor is checked against its query before it gets here.
        _ => sql.push("1 = 0"),
    }
}

/// Rows after `after` in the order of `keys` then the id (keyset paging).
fn after_sql(sql: &mut Sql, keys: &[SortKey], id_descending: bool, after: &After) {
    sql.push("(");
    for i in 0..=keys.len() {
        if i > 0 {
            sql.push(" OR ");
        }
        sql.push("(");
        for (key, value) in keys.iter().zip(&after.keys).take(i) {
            key_compare(sql, key, value, false);
            sql.push(" AND ");
        }
        if i < keys.len() {
            key_compare(sql, &keys[i], &after.keys[i], true);
        } else {
            let _ = write!(sql.text, "id {} ", if id_descending { "<" } else { ">" });
            sql.bind(Bind::Text(after.id.clone()));
        }
        sql.push(")");
    }
    sql.push(")");
    // The first key's bound alone, so the planner can seek an index to it.
    if let (Some(first), Some(value)) = (keys.first(), after.keys.first()) {
        let ge = if first.descending { "<=" } else { ">=" };
        match (column(&first.field), value) {
            (Some((col, _)), KeyValue::Millis(ms)) => {
                let _ = write!(sql.text, " AND {col} {ge} ");
                sql.bind(Bind::Int(*ms));
            }
            (Some((col, _)), KeyValue::Text(t)) => {
                let _ = write!(sql.text, " AND {col} {ge} ");
                sql.bind(Bind::Text(t.clone()));
            }
            (None, KeyValue::Ranked(rank, _)) => {
                if let Field::Data(path) = &first.field {
                    let p = path_sql(sql.backend, path);
                    let _ = write!(sql.text, " AND {} {ge} {rank}", p.rank);
                }
            }
            _ => {}
        }
    }
}

/// The name of the index kept for a spec: short (PostgreSQL cuts names at
/// 63 bytes) and the same for the same spec on every start.
fn index_name(spec: &IndexSpec) -> String {
    format!("{}{}", INDEX_PREFIX, index_hash(spec))
}

/// The prefix of index names. It changes with the expressions (an index
/// of older ones would not match the queries): PostgreSQL's path literals
/// were quoted in version 4, SQLite's expressions are still those of 3.
const INDEX_PREFIX: &str = "wxq3_";
const PG_INDEX_PREFIX: &str = "wxq4_";
/// Older PostgreSQL prefixes, whose index of a spec is dropped when the
/// current one is made.
const PG_OLD_INDEX_PREFIXES: &[&str] = &["wxq3_"];

fn index_hash(spec: &IndexSpec) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(spec.collection.as_bytes());
    h.update([0]);
    h.update(spec.path.join(".").as_bytes());
    h.update([u8::from(spec.descending), u8::from(spec.shared)]);
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn backend_index_name(backend: Backend, spec: &IndexSpec) -> String {
    match backend {
        Backend::Sqlite => index_name(spec),
        Backend::Postgres => format!("{PG_INDEX_PREFIX}{}", index_hash(spec)),
    }
}

/// The statement that creates the index for a spec (if missing).
pub fn index_sql(backend: Backend, spec: &IndexSpec) -> String {
    let who = if spec.shared { "appid" } else { "user_id" };
    let key = SortKey {
        field: Field::Data(spec.path.clone()),
        descending: spec.descending,
    };
    let dir = if spec.descending { " DESC" } else { "" };
    let terms = order_terms(backend, &key).join(", ");
    // Then the tie-break order, so an equality on the field reads the
    // index in creation order too.
    format!(
        "CREATE INDEX IF NOT EXISTS {} ON documents ({who}, {terms}, created_at{dir}, id{dir}) WHERE collection = '{}'",
        backend_index_name(backend, spec),
        literal(&spec.collection)
    )
}

/// The statement that keeps a shared collection's default order indexed.
pub fn shared_order_index_sql(collection: &str) -> String {
    let spec = IndexSpec {
        collection: collection.to_owned(),
        path: vec!["created_at".into()],
        descending: true,
        shared: true,
    };
    // Named from a spec no data path can produce (a built-in's name).
    format!(
        "CREATE INDEX IF NOT EXISTS {}_t ON documents (appid, created_at, id) WHERE collection = '{}'",
        index_name(&spec),
        literal(collection)
    )
}

/// A query over documents.
#[derive(Debug, Clone)]
pub struct DocumentQuery<'a> {
    /// Whose documents.
    pub scope: &'a Scope,
    /// Which of them.
    pub filter: &'a Filter,
    /// Sort keys (the id breaks ties, in the last key's direction).
    pub order: &'a [SortKey],
    /// Where the page starts.
    pub after: Option<&'a After>,
    /// At most this many.
    pub limit: i64,
}

fn select_sql(backend: Backend, q: &DocumentQuery<'_>) -> Sql {
    let mut sql = Sql::new(backend);
    let _ = write!(sql.text, "SELECT {COLUMNS} FROM documents WHERE ");
    scope_sql(&mut sql, q.scope);
    sql.push(" AND ");
    compile(&mut sql, q.filter);
    let id_descending = q.order.last().is_some_and(|k| k.descending);
    if let Some(after) = q.after {
        sql.push(" AND ");
        after_sql(&mut sql, q.order, id_descending, after);
    }
    sql.push(" ORDER BY ");
    for key in q.order {
        for term in order_terms(backend, key) {
            sql.push(&term);
            sql.push(", ");
        }
    }
    sql.push(if id_descending { "id DESC" } else { "id" });
    sql.push(" LIMIT ");
    sql.bind(Bind::Int(q.limit));
    sql
}

impl Store {
    /// A page of documents matching a query.
    /// (A bounded read: see `bounded_reads`.)
    pub async fn query_documents(&self, q: &DocumentQuery<'_>) -> Result<Vec<DocumentRecord>> {
        let sql = select_sql(self.backend, q);
        let (text, args) = sql.into_parts();
        let rows = self.bounded.fetch_all(text, args).await?;
        rows.iter().map(DocumentRecord::from_row).collect()
    }

    /// How many documents match.
    pub async fn count_documents(&self, scope: &Scope, filter: &Filter) -> Result<u64> {
        let mut sql = Sql::new(self.backend);
        sql.push("SELECT COUNT(*) AS n FROM documents WHERE ");
        scope_sql(&mut sql, scope);
        sql.push(" AND ");
        compile(&mut sql, filter);
        let (text, args) = sql.into_parts();
        let rows = self.bounded.fetch_all(text, args).await?;
        let n: i64 = rows
            .first()
            .ok_or_else(|| crate::Error::internal("database: COUNT returned no row"))?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The database's plan for a query, as text (tests show that declared
    /// indexes are used).
    pub async fn explain_documents(&self, q: &DocumentQuery<'_>) -> Result<String> {
        let inner = select_sql(self.backend, q);
        let prefix = match self.backend {
            Backend::Sqlite => "EXPLAIN QUERY PLAN ",
            Backend::Postgres => "EXPLAIN ",
        };
        let mut sql = Sql::new(self.backend);
        sql.push(prefix);
        sql.push(&inner.text);
        sql.binds = inner.binds;
        let rows = sql.query().fetch_all(&self.pool).await?;
        let column = match self.backend {
            Backend::Sqlite => "detail",
            Backend::Postgres => "QUERY PLAN",
        };
        let mut plan = String::new();
        for row in &rows {
            let line: String = row.try_get(column)?;
            plan.push_str(&line);
            plan.push('\n');
        }
        Ok(plan)
    }

    /// Creates the declared indexes that are missing (at start-up and in
    /// `wxauth migrate`). Indexes no longer declared are left in place.
    pub async fn ensure_indexes(&self, specs: &[IndexSpec], shared: &[String]) -> Result<()> {
        for spec in specs {
            if self.backend == Backend::Postgres {
                for old in PG_OLD_INDEX_PREFIXES {
                    let name = format!("{old}{}", index_hash(spec));
                    sqlx::query(&format!("DROP INDEX IF EXISTS {name}"))
                        .execute(&self.pool)
                        .await?;
                }
            }
            sqlx::query(&index_sql(self.backend, spec))
                .execute(&self.pool)
                .await?;
        }
        for collection in shared {
            sqlx::query(&shared_order_index_sql(collection))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_and_paths_spliced_only_once_checked() {
        let filter = Filter::All(vec![
            Filter::Compare(
                Field::Data(vec!["a".into(), "b".into()]),
                Op::Eq,
                Scalar::Text("x' OR 1=1 --".into()),
            ),
            Filter::In(
                Field::Owner,
                vec![Scalar::Text("u".into()), Scalar::Number(3.into())],
                false,
            ),
        ]);
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let mut sql = Sql::new(backend);
            compile(&mut sql, &filter);
            assert!(!sql.text.contains("OR 1=1"), "{}", sql.text);
            assert_eq!(sql.binds.len(), 2, "{}", sql.text);
            // The mismatched owner literal matches nothing rather than erroring.
            assert!(sql.text.contains("1 = 0"), "{}", sql.text);
        }
    }

    #[test]
    fn index_names_are_stable_and_short() {
        let spec = IndexSpec {
            collection: "posts".into(),
            path: vec!["status".into()],
            descending: false,
            shared: true,
        };
        assert_eq!(index_name(&spec), index_name(&spec.clone()));
        assert!(index_name(&spec).len() < 63);
        let other = IndexSpec {
            descending: true,
            ..spec.clone()
        };
        assert_ne!(index_name(&spec), index_name(&other));
    }
}
