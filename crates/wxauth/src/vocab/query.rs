//! The query plan every layer speaks: which documents (`Scope`), which of
//! them (`Filter` over `Field`s and `Scalar`s), in what order (`SortKey`),
//! from where (`After`), and the indexes to keep (`IndexSpec`). `data`
//! builds it from the query language, `store` renders it as SQL per
//! backend, `config` checks index paths with [`parse_path`]. Types only:
//! no SQL and nothing of any other layer.

use serde_json::{Number, Value};

/// Checks a dotted field path and splits it. Segments are
/// `[A-Za-z0-9_]{1,64}` and not all digits (an array position reads
/// differently on the two databases), at most 8 of them; the error names
/// the rule broken.
pub fn parse_path(text: &str) -> std::result::Result<Vec<String>, String> {
    let shown: String = text.chars().take(80).collect();
    let segments: Vec<String> = text.split('.').map(str::to_owned).collect();
    if segments.len() > 8 {
        return Err(format!("field path {shown:?} has more than 8 segments"));
    }
    for s in &segments {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(format!(
                "field path {shown:?}: each dot-separated segment must match [A-Za-z0-9_]{{1,64}}"
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "field path {shown:?}: a segment may not be all digits (array positions are not supported)"
            ));
        }
    }
    Ok(segments)
}

/// A field a query may name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Field {
    /// A path into the document's JSON (checked segments).
    Data(Vec<String>),
    /// The document id (text).
    Id,
    /// The owner's user id (text).
    Owner,
    /// Creation time, Unix milliseconds.
    CreatedAt,
    /// Last replace, Unix milliseconds.
    UpdatedAt,
}

/// A literal a condition compares with.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// JSON null.
    Null,
    /// true or false.
    Bool(bool),
    /// A number.
    Number(Number),
    /// A string.
    Text(String),
}

impl Scalar {
    /// The rank of a JSON value of this type.
    pub fn rank(&self) -> u8 {
        match self {
            Scalar::Null => 1,
            Scalar::Bool(false) => 2,
            Scalar::Bool(true) => 3,
            Scalar::Number(_) => 4,
            Scalar::Text(_) => 5,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `$eq`
    Eq,
    /// `$ne`
    Ne,
    /// `$gt`
    Gt,
    /// `$gte`
    Gte,
    /// `$lt`
    Lt,
    /// `$lte`
    Lte,
}

impl Op {
    /// The SQL comparison operator.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
        }
    }
}

/// A checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one (an empty list matches everything).
    All(Vec<Filter>),
    /// At least one (an empty list matches nothing).
    Any(Vec<Filter>),
    /// `field op value`.
    Compare(Field, Op, Scalar),
    /// `field` equals one of the values (`$in`), or none of them (`$nin`).
    In(Field, Vec<Scalar>, bool),
    /// `field` is present (`true`) or missing (`false`).
    Exists(Field, bool),
}

/// One sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// What to sort by.
    pub field: Field,
    /// Largest first.
    pub descending: bool,
}

/// A sort key's value in one document (what a cursor carries).
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// A data field: its rank and, for numbers and strings, its value.
    Ranked(u8, Option<Scalar>),
    /// A text column (id, owner).
    Text(String),
    /// A time column, Unix milliseconds.
    Millis(i64),
}

/// The columns of a document a sort key can read besides its JSON.
#[derive(Debug, Clone, Copy)]
pub struct DocumentFields<'a> {
    /// The document id.
    pub id: &'a str,
    /// The owner's user id.
    pub owner: &'a str,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

impl KeyValue {
    /// The key's value in a document (what SQL computes for the same row).
    pub fn of(field: &Field, doc: &DocumentFields<'_>, data: &Value) -> KeyValue {
        match field {
            Field::Id => KeyValue::Text(doc.id.to_owned()),
            Field::Owner => KeyValue::Text(doc.owner.to_owned()),
            Field::CreatedAt => KeyValue::Millis(doc.created_at),
            Field::UpdatedAt => KeyValue::Millis(doc.updated_at),
            Field::Data(path) => {
                let mut at = Some(data);
                for segment in path {
                    at = at.and_then(|v| v.as_object()).and_then(|o| o.get(segment));
                }
                match at {
                    None => KeyValue::Ranked(0, None),
                    Some(Value::Null) => KeyValue::Ranked(1, None),
                    Some(Value::Bool(b)) => KeyValue::Ranked(if *b { 3 } else { 2 }, None),
                    Some(Value::Number(n)) => KeyValue::Ranked(4, Some(Scalar::Number(n.clone()))),
                    Some(Value::String(s)) => KeyValue::Ranked(5, Some(Scalar::Text(s.clone()))),
                    Some(Value::Array(_)) => KeyValue::Ranked(6, None),
                    Some(Value::Object(_)) => KeyValue::Ranked(7, None),
                }
            }
        }
    }
}

/// Where a page resumes: after the document with these key values and id.
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    /// One value per sort key.
    pub keys: Vec<KeyValue>,
    /// The last document's id.
    pub id: String,
}

/// Whose documents a query sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One user's documents in a collection.
    Owner {
        /// The user.
        user_id: String,
        /// Checked collection name.
        collection: String,
    },
    /// Every document of one app's users in a (shared) collection.
    App {
        /// The app.
        appid: String,
        /// Checked collection name.
        collection: String,
    },
}

impl Scope {
    /// The collection.
    pub fn collection(&self) -> &str {
        self.parts().2
    }

    /// The column that scopes rows, its value, and the collection.
    pub(crate) fn parts(&self) -> (&'static str, &str, &str) {
        match self {
            Scope::Owner {
                user_id,
                collection,
            } => ("user_id", user_id, collection),
            Scope::App { appid, collection } => ("appid", appid, collection),
        }
    }
}

/// An index to keep on a collection's field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    /// Checked collection name.
    pub collection: String,
    /// Checked path segments.
    pub path: Vec<String>,
    /// `-field`.
    pub descending: bool,
    /// Shared collections are read per app, private ones per user.
    pub shared: bool,
}

/// A data value's rank and comparable value, as the SQL of a condition
/// reads it (see `KeyValue::of`).
fn ranked(field: &Field, doc: &DocumentFields<'_>, data: &Value) -> KeyValue {
    KeyValue::of(field, doc, data)
}

/// Orders two numbers as SQLite does: exactly between integers, else as
/// doubles (PostgreSQL compares as doubles throughout: the two differ
/// only for integers past 2^53).
fn cmp_numbers(a: &Number, b: &Number) -> Option<std::cmp::Ordering> {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => Some(x.cmp(&y)),
        _ => a.as_f64()?.partial_cmp(&b.as_f64()?),
    }
}

fn holds(op: Op, order: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => order == Equal,
        Op::Ne => order != Equal,
        Op::Gt => order == Greater,
        Op::Gte => order != Less,
        Op::Lt => order == Less,
        Op::Lte => order != Greater,
    }
}

/// `field = value`, as the store's SQL decides it (never unknown).
fn equals(field: &Field, value: &Scalar, doc: &DocumentFields<'_>, data: &Value) -> bool {
    compare(field, Op::Eq, value, doc, data)
}

/// `field op value` for Eq and the orderings (Ne is the negation of Eq).
fn compare(field: &Field, op: Op, value: &Scalar, doc: &DocumentFields<'_>, data: &Value) -> bool {
    match (ranked(field, doc, data), value) {
        // Built-in columns: a literal of another type matches nothing.
        (KeyValue::Text(have), Scalar::Text(want)) => holds(op, have.as_str().cmp(want.as_str())),
        (KeyValue::Millis(have), Scalar::Number(want)) => match want.as_i64() {
            Some(want) => holds(op, have.cmp(&want)),
            None => false,
        },
        (KeyValue::Text(_) | KeyValue::Millis(_), _) => false,
        (KeyValue::Ranked(rank, have), want) => {
            if rank != want.rank() {
                return false;
            }
            match (have, want) {
                (Some(Scalar::Number(h)), Scalar::Number(w)) => {
                    cmp_numbers(&h, w).is_some_and(|o| holds(op, o))
                }
                (Some(Scalar::Text(h)), Scalar::Text(w)) => holds(op, h.as_str().cmp(w.as_str())),
                // null, true, false: equal by rank alone; not ordered.
                (_, Scalar::Null | Scalar::Bool(_)) => op == Op::Eq,
                _ => false,
            }
        }
    }
}

impl KeyValue {
    /// Orders two values of the same sort key as the store's ORDER BY
    /// does: by rank, then numbers by value and strings byte by byte
    /// (other ranks are equal among themselves).
    pub fn cmp_sql(&self, other: &KeyValue) -> std::cmp::Ordering {
        use std::cmp::Ordering::Equal;
        match (self, other) {
            (KeyValue::Text(a), KeyValue::Text(b)) => a.as_str().cmp(b.as_str()),
            (KeyValue::Millis(a), KeyValue::Millis(b)) => a.cmp(b),
            (KeyValue::Ranked(ra, va), KeyValue::Ranked(rb, vb)) => {
                ra.cmp(rb).then_with(|| match (va, vb) {
                    (Some(Scalar::Number(a)), Some(Scalar::Number(b))) => {
                        cmp_numbers(a, b).unwrap_or(Equal)
                    }
                    (Some(Scalar::Text(a)), Some(Scalar::Text(b))) => a.as_str().cmp(b.as_str()),
                    _ => Equal,
                })
            }
            _ => Equal,
        }
    }
}

/// Orders two documents (their sort key values and ids) as a query with
/// `order` lists them: each key in its direction, then the id in the
/// last key's direction.
pub fn cmp_listed(
    order: &[SortKey],
    a: (&[KeyValue], &str),
    b: (&[KeyValue], &str),
) -> std::cmp::Ordering {
    for (key, (x, y)) in order.iter().zip(a.0.iter().zip(b.0.iter())) {
        let o = x.cmp_sql(y);
        let o = if key.descending { o.reverse() } else { o };
        if o.is_ne() {
            return o;
        }
    }
    let o = a.1.cmp(b.1);
    if order.last().is_some_and(|k| k.descending) {
        o.reverse()
    } else {
        o
    }
}

impl Filter {
    /// Whether a document matches, decided as the store's SQL decides it
    /// (a watch tests each change against its query with this, so a
    /// change reaches exactly the watches whose `GET /v1/data` would list
    /// the document).
    pub fn matches(&self, doc: &DocumentFields<'_>, data: &Value) -> bool {
        match self {
            Filter::All(parts) => parts.iter().all(|p| p.matches(doc, data)),
            Filter::Any(parts) => parts.iter().any(|p| p.matches(doc, data)),
            Filter::Compare(field, Op::Ne, value) => !equals(field, value, doc, data),
            Filter::Compare(field, op, value) => compare(field, *op, value, doc, data),
            Filter::In(field, values, negated) => {
                values.iter().any(|v| equals(field, v, doc, data)) != *negated
            }
            Filter::Exists(field, exists) => match ranked(field, doc, data) {
                KeyValue::Ranked(rank, _) => (rank != 0) == *exists,
                _ => *exists,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> DocumentFields<'static> {
        DocumentFields {
            id: "d1",
            owner: "u1",
            created_at: 1000,
            updated_at: 2000,
        }
    }

    fn data(path: &str) -> Field {
        Field::Data(parse_path(path).unwrap())
    }

    fn num(n: serde_json::Value) -> Scalar {
        match n {
            Value::Number(n) => Scalar::Number(n),
            _ => unreachable!(),
        }
    }

    #[test]
    fn conditions_match_as_the_sql_does() {
        let d =
            json!({"n": 3, "f": 2.5, "s": "b", "t": true, "z": null, "o": {"k": "v"}, "a": [1]});
        let m = |f: Filter| f.matches(&doc(), &d);
        assert!(m(Filter::Compare(data("n"), Op::Eq, num(json!(3.0)))));
        assert!(m(Filter::Compare(data("n"), Op::Gt, num(json!(2.5)))));
        assert!(!m(Filter::Compare(
            data("n"),
            Op::Gt,
            Scalar::Text("a".into())
        )));
        assert!(m(Filter::Compare(
            data("s"),
            Op::Lt,
            Scalar::Text("c".into())
        )));
        assert!(m(Filter::Compare(data("t"), Op::Eq, Scalar::Bool(true))));
        assert!(!m(Filter::Compare(data("t"), Op::Eq, Scalar::Bool(false))));
        assert!(m(Filter::Compare(data("z"), Op::Eq, Scalar::Null)));
        assert!(!m(Filter::Compare(data("missing"), Op::Eq, Scalar::Null)));
        assert!(m(Filter::Compare(data("missing"), Op::Ne, Scalar::Null)));
        assert!(m(Filter::Compare(
            data("o.k"),
            Op::Eq,
            Scalar::Text("v".into())
        )));
        assert!(!m(Filter::Compare(
            data("s.k"),
            Op::Eq,
            Scalar::Text("v".into())
        )));
        assert!(m(Filter::Exists(data("a"), true)));
        assert!(m(Filter::Exists(data("nope"), false)));
        assert!(m(Filter::In(
            data("n"),
            vec![num(json!(1)), num(json!(3))],
            false
        )));
        assert!(!m(Filter::In(data("n"), vec![num(json!(1))], false)));
        assert!(m(Filter::In(data("n"), vec![num(json!(1))], true)));
        assert!(!m(Filter::In(data("n"), vec![], false)));
        assert!(m(Filter::In(data("n"), vec![], true)));
        assert!(m(Filter::Compare(
            Field::Owner,
            Op::Eq,
            Scalar::Text("u1".into())
        )));
        assert!(!m(Filter::Compare(Field::Owner, Op::Eq, num(json!(1)))));
        assert!(m(Filter::Compare(
            Field::CreatedAt,
            Op::Lt,
            num(json!(2000))
        )));
        assert!(!m(Filter::Compare(
            Field::CreatedAt,
            Op::Lt,
            num(json!(1.5))
        )));
        assert!(m(Filter::All(vec![])));
        assert!(!m(Filter::Any(vec![])));
    }
}
