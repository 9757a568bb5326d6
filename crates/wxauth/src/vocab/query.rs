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
