//! The query language of `GET /v1/data/{collection}`: `where` (JSON),
//! `order_by` and the cursor, checked and turned into the store's model.
//!
//! `where` is shaped like CloudBase's and MongoDB's: field paths with dots,
//! a literal for equality, an object of `$` operators, a nested object as
//! a shorthand for dotted paths (`{"a": {"b": 1}}` is `{"a.b": 1}`), and
//! top-level `$and` / `$or` arrays. The cost of a query is bounded:
//! [`MAX_CONDITIONS`], [`MAX_DEPTH`], [`MAX_IN_VALUES`] and, counting
//! every `$in` value, [`MAX_COMPARISONS`]; past a bound the answer is a 400
//! naming it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Number, Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::vocab::query::{After, Field, Filter, KeyValue, Op, Scalar, SortKey, parse_path};

/// Conditions (operator leaves) one `where` may hold.
pub const MAX_CONDITIONS: usize = 20;
/// How deep `$and`/`$or` and nested objects may go.
pub const MAX_DEPTH: usize = 4;
/// Values one `$in` or `$nin` may list.
pub const MAX_IN_VALUES: usize = 100;
/// Comparisons one `where` may make in all: each condition is one, and
/// each value of an `$in`/`$nin` list one more (the list expands to that
/// many comparisons in SQL, so 20 lists of 100 would be 2,000).
pub const MAX_COMPARISONS: usize = 200;
/// Keys one `order_by` may name.
pub const MAX_SORT_KEYS: usize = 4;

fn invalid(msg: impl Into<String>) -> Error {
    Error::InvalidRequest(msg.into())
}

/// The field a checked path names: `id`, `owner`, `created_at` and
/// `updated_at` at the top level are the document's own, anything else is
/// a path into its data.
fn field_of(path: Vec<String>) -> Field {
    if path.len() == 1 {
        match path[0].as_str() {
            "id" => return Field::Id,
            "owner" => return Field::Owner,
            "created_at" => return Field::CreatedAt,
            "updated_at" => return Field::UpdatedAt,
            _ => {}
        }
    }
    Field::Data(path)
}

fn field_name(field: &Field) -> String {
    match field {
        Field::Data(p) => p.join("."),
        Field::Id => "id".into(),
        Field::Owner => "owner".into(),
        Field::CreatedAt => "created_at".into(),
        Field::UpdatedAt => "updated_at".into(),
    }
}

struct Parser<'a> {
    /// The caller's user id (`"owner": "me"`).
    me: &'a str,
    conditions: usize,
    comparisons: usize,
}

impl Parser<'_> {
    fn count(&mut self) -> Result<()> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(invalid(format!(
                "where has more than {MAX_CONDITIONS} conditions"
            )));
        }
        self.compare(1)
    }

    /// Adds `n` comparisons to the budget.
    fn compare(&mut self, n: usize) -> Result<()> {
        self.comparisons += n;
        if self.comparisons > MAX_COMPARISONS {
            return Err(invalid(format!(
                "where makes more than {MAX_COMPARISONS} comparisons in all (each $in or $nin value counts as one)"
            )));
        }
        Ok(())
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &[String],
        depth: usize,
    ) -> Result<Filter> {
        if depth > MAX_DEPTH {
            return Err(invalid(format!(
                "where nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut parts = Vec::with_capacity(obj.len());
        for (key, value) in obj {
            if key == "$and" || key == "$or" {
                if !prefix.is_empty() {
                    return Err(invalid(format!(
                        "{key} goes at the top of where or inside another $and/$or, not under a field"
                    )));
                }
                let Value::Array(items) = value else {
                    return Err(invalid(format!("{key} takes an array of where objects")));
                };
                if items.is_empty() {
                    return Err(invalid(format!("{key} takes a non-empty array")));
                }
                let mut subs = Vec::with_capacity(items.len());
                for item in items {
                    let Value::Object(o) = item else {
                        return Err(invalid(format!("{key} takes an array of where objects")));
                    };
                    subs.push(self.object(o, &[], depth + 1)?);
                }
                parts.push(if key == "$and" {
                    Filter::All(subs)
                } else {
                    Filter::Any(subs)
                });
                continue;
            }
            if key.starts_with('$') {
                return Err(invalid(format!(
                    "unknown operator {key} where a field name belongs (use $and or $or)"
                )));
            }
            let mut path = prefix.to_vec();
            path.extend(parse_path(key).map_err(invalid)?);
            parts.push(self.field(path, value, depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.pop().unwrap_or(Filter::All(Vec::new()))
        } else {
            Filter::All(parts)
        })
    }

    fn field(&mut self, path: Vec<String>, value: &Value, depth: usize) -> Result<Filter> {
        if path.len() > 8 {
            return Err(invalid(format!(
                "field path {:?} has more than 8 segments",
                path.join(".")
            )));
        }
        match value {
            Value::Object(o) if o.is_empty() => Err(invalid(format!(
                "field {}: an empty object is not a condition",
                path.join(".")
            ))),
            Value::Object(o) if o.keys().all(|k| k.starts_with('$')) => {
                let field = field_of(path);
                let mut parts = Vec::with_capacity(o.len());
                for (op, arg) in o {
                    self.count()?;
                    parts.push(self.operator(&field, op, arg)?);
                }
                Ok(if parts.len() == 1 {
                    parts.pop().unwrap_or(Filter::All(Vec::new()))
                } else {
                    Filter::All(parts)
                })
            }
            Value::Object(o) if o.keys().any(|k| k.starts_with('$')) => Err(invalid(format!(
                "field {}: an object mixes operators and field names",
                path.join(".")
            ))),
            // `{"a": {"b": 1}}` is `{"a.b": 1}`.
            Value::Object(o) => self.object(o, &path, depth + 1),
            other => {
                self.count()?;
                let field = field_of(path);
                let value = self.scalar(&field, "equality", other)?;
                Ok(Filter::Compare(field, Op::Eq, value))
            }
        }
    }

    fn operator(&mut self, field: &Field, op: &str, arg: &Value) -> Result<Filter> {
        let compare =
            |op: Op| -> Result<Filter> { Ok(Filter::Compare(field.clone(), op, Scalar::Null)) };
        let mut filter = match op {
            "$eq" => compare(Op::Eq)?,
            "$ne" => compare(Op::Ne)?,
            "$gt" => compare(Op::Gt)?,
            "$gte" => compare(Op::Gte)?,
            "$lt" => compare(Op::Lt)?,
            "$lte" => compare(Op::Lte)?,
            "$in" | "$nin" => {
                let Value::Array(items) = arg else {
                    return Err(invalid(format!(
                        "field {}: {op} takes an array of values",
                        field_name(field)
                    )));
                };
                if items.len() > MAX_IN_VALUES {
                    return Err(invalid(format!(
                        "field {}: {op} takes at most {MAX_IN_VALUES} values",
                        field_name(field)
                    )));
                }
                // The condition itself counted one already.
                self.compare(items.len().saturating_sub(1))?;
                let values = items
                    .iter()
                    .map(|v| self.scalar(field, op, v))
                    .collect::<Result<Vec<_>>>()?;
                return Ok(Filter::In(field.clone(), values, op == "$nin"));
            }
            "$exists" => {
                let Value::Bool(b) = arg else {
                    return Err(invalid(format!(
                        "field {}: $exists takes true or false",
                        field_name(field)
                    )));
                };
                return Ok(Filter::Exists(field.clone(), *b));
            }
            "$and" | "$or" => {
                return Err(invalid(format!(
                    "field {}: {op} goes at the top of where or inside another $and/$or, not under a field",
                    field_name(field)
                )));
            }
            other => {
                return Err(invalid(format!(
                    "field {}: unknown operator {other} (use $eq $ne $gt $gte $lt $lte $in $nin $exists)",
                    field_name(field)
                )));
            }
        };
        let value = self.scalar(field, op, arg)?;
        if let Filter::Compare(_, cmp, slot) = &mut filter {
            if !matches!(cmp, Op::Eq | Op::Ne)
                && !matches!(value, Scalar::Number(_) | Scalar::Text(_))
            {
                return Err(invalid(format!(
                    "field {}: {op} compares numbers or strings",
                    field_name(field)
                )));
            }
            *slot = value;
        }
        Ok(filter)
    }

    /// A literal, with `owner`'s `"me"` and the time fields' RFC 3339 text
    /// turned into what the store compares.
    fn scalar(&self, field: &Field, op: &str, value: &Value) -> Result<Scalar> {
        let scalar = match value {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(n.clone()),
            // PostgreSQL refuses U+0000 in a parameter (and its JSON
            // cannot hold it: stored documents read it as U+FFFD there).
            Value::String(s) if s.contains('\0') => {
                return Err(invalid(format!(
                    "field {}: strings may not contain U+0000",
                    field_name(field)
                )));
            }
            Value::String(s) => Scalar::Text(s.clone()),
            Value::Array(_) | Value::Object(_) => {
                return Err(invalid(format!(
                    "field {}: {op} compares with null, a boolean, a number or a string, not an array or object",
                    field_name(field)
                )));
            }
        };
        Ok(match (field, scalar) {
            (Field::Owner, Scalar::Text(s)) if s == "me" => Scalar::Text(self.me.to_owned()),
            (Field::CreatedAt | Field::UpdatedAt, Scalar::Text(s)) => {
                let t = humantime::parse_rfc3339_weak(&s).map_err(|_| {
                    invalid(format!(
                        "field {}: compare with an RFC 3339 time (2026-01-02T03:04:05Z) or Unix milliseconds",
                        field_name(field)
                    ))
                })?;
                let ms = t
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis())
                    .unwrap_or(0);
                Scalar::Number(Number::from(u64::try_from(ms).unwrap_or(u64::MAX)))
            }
            (_, s) => s,
        })
    }
}

/// Parses `where` (JSON text) for a caller; no text is everything.
pub fn parse_where(text: Option<&str>, me: &str) -> Result<(Filter, Value)> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok((Filter::All(Vec::new()), Value::Null));
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("where is not valid JSON: {e}")))?;
    let Value::Object(obj) = &value else {
        return Err(invalid("where must be a JSON object"));
    };
    let mut parser = Parser {
        me,
        conditions: 0,
        comparisons: 0,
    };
    let filter = parser.object(obj, &[], 1)?;
    Ok((filter, value))
}

/// Parses `order_by` (`priority,-created_at`); none is newest first.
/// Ties are broken by `created_at` and then the id.
pub fn parse_order_by(text: Option<&str>) -> Result<Vec<SortKey>> {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(vec![SortKey {
            field: Field::CreatedAt,
            descending: true,
        }]);
    };
    let mut keys = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        let (name, descending) = match item.strip_prefix('-') {
            Some(rest) => (rest, true),
            None => (item.strip_prefix('+').unwrap_or(item), false),
        };
        if name.is_empty() {
            return Err(invalid(
                "order_by is a comma-separated list of fields, each optionally prefixed with - (descending)",
            ));
        }
        let path = parse_path(name).map_err(|e| invalid(format!("order_by: {e}")))?;
        keys.push(SortKey {
            field: field_of(path),
            descending,
        });
    }
    if keys.len() > MAX_SORT_KEYS {
        return Err(invalid(format!(
            "order_by names at most {MAX_SORT_KEYS} fields"
        )));
    }
    // Ties go by creation time, then id, in the last key's direction: a
    // declared index holds (field, created_at, id), so "open tasks, newest
    // first" and "by status" both read one index in order.
    if !keys.iter().any(|k| k.field == Field::CreatedAt) {
        let descending = keys.last().is_some_and(|k| k.descending);
        keys.push(SortKey {
            field: Field::CreatedAt,
            descending,
        });
    }
    Ok(keys)
}

/// What a cursor is bound to: the same collection, `where` and order.
pub fn fingerprint(collection: &str, where_value: &Value, order: &[SortKey]) -> String {
    let mut h = Sha256::new();
    h.update(collection.as_bytes());
    h.update([0]);
    h.update(where_value.to_string().as_bytes());
    h.update([0]);
    for key in order {
        h.update([u8::from(key.descending)]);
        h.update(field_name(&key.field).as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn key_json(value: &KeyValue) -> Value {
    match value {
        KeyValue::Ranked(rank, v) => json!([
            rank,
            match v {
                Some(Scalar::Number(n)) => Value::Number(n.clone()),
                Some(Scalar::Text(t)) => Value::String(t.clone()),
                _ => Value::Null,
            }
        ]),
        KeyValue::Text(t) => Value::String(t.clone()),
        KeyValue::Millis(ms) => json!(ms),
    }
}

/// The cursor of the page after `after`, bound to the query `fp`.
pub fn encode_cursor(fp: &str, after: &After) -> String {
    let keys: Vec<Value> = after.keys.iter().map(key_json).collect();
    URL_SAFE_NO_PAD.encode(json!({"q": fp, "k": keys, "id": after.id}).to_string())
}

/// Reads a cursor issued for the query `fp` with sort keys `order`.
pub fn decode_cursor(cursor: &str, fp: &str, order: &[SortKey]) -> Result<After> {
    let bad = || invalid("cursor is not one this server issued");
    let text = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&text).map_err(|_| bad())?;
    if value.get("q").and_then(Value::as_str) != Some(fp) {
        return Err(invalid(
            "cursor belongs to another query (collection, where and order_by must stay the same while paging)",
        ));
    }
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| uuid::Uuid::parse_str(id).is_ok())
        .ok_or_else(bad)?
        .to_owned();
    let keys = value.get("k").and_then(Value::as_array).ok_or_else(bad)?;
    if keys.len() != order.len() {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(keys.len());
    for (key, v) in order.iter().zip(keys) {
        out.push(match (&key.field, v) {
            (_, Value::String(s)) if s.contains('\0') => return Err(bad()),
            (Field::Id | Field::Owner, Value::String(s)) => KeyValue::Text(s.clone()),
            (Field::CreatedAt | Field::UpdatedAt, Value::Number(n)) => {
                KeyValue::Millis(n.as_i64().ok_or_else(bad)?)
            }
            (Field::Data(_), Value::Array(pair)) if pair.len() == 2 => {
                let rank = pair[0].as_u64().filter(|r| *r <= 7).ok_or_else(bad)? as u8;
                let value = match (rank, &pair[1]) {
                    (4, Value::Number(n)) => Some(Scalar::Number(n.clone())),
                    (5, Value::String(s)) if !s.contains('\0') => Some(Scalar::Text(s.clone())),
                    (4 | 5, _) => return Err(bad()),
                    (_, Value::Null) => None,
                    _ => return Err(bad()),
                };
                KeyValue::Ranked(rank, value)
            }
            _ => return Err(bad()),
        });
    }
    Ok(After { keys: out, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Filter> {
        parse_where(Some(text), "u1").map(|(f, _)| f)
    }

    #[test]
    fn shapes() {
        assert_eq!(
            parse(r#"{"done":false}"#).ok(),
            Some(Filter::Compare(
                Field::Data(vec!["done".into()]),
                Op::Eq,
                Scalar::Bool(false)
            ))
        );
        assert_eq!(parse(r#"{"a":{"b":1}}"#).ok(), parse(r#"{"a.b":1}"#).ok());
        assert_eq!(
            parse(r#"{"owner":"me"}"#).ok(),
            Some(Filter::Compare(
                Field::Owner,
                Op::Eq,
                Scalar::Text("u1".into())
            ))
        );
        assert!(parse(r#"{"$or":[{"a":1},{"b":{"$in":[1,"x",null]}}]}"#).is_ok());
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"a":{"$regex":"x"}}"#, "unknown operator $regex"),
            (r#"{"$nor":[]}"#, "unknown operator $nor"),
            (r#"{"a b":1}"#, "segment"),
            (r#"{"a.0":1}"#, "all digits"),
            (r#"{"a":{"$gt":true}}"#, "numbers or strings"),
            (r#"{"a":[1]}"#, "not an array"),
            (r#"{"a":{"$in":1}}"#, "array of values"),
            (r#"{"a":{"$exists":1}}"#, "true or false"),
            (r#"{"a":{"$gt":1,"b":2}}"#, "mixes"),
            (r#"{"a":{"$and":[]}}"#, "not under a field"),
            (r#"{"created_at":{"$gt":"yesterday"}}"#, "RFC 3339"),
            (r#"{"a":"x\u0000"}"#, "U+0000"),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let many: Vec<String> = (0..21).map(|i| format!("\"f{i}\":1")).collect();
        let err = parse(&format!("{{{}}}", many.join(",")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("20 conditions"), "{err}");
        let deep = r#"{"$or":[{"$or":[{"$or":[{"$or":[{"a":1}]}]}]}]}"#;
        assert!(
            parse(deep)
                .unwrap_err()
                .to_string()
                .contains("deeper than 4")
        );
        let values: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let err = parse(&format!("{{\"a\":{{\"$in\":[{}]}}}}", values.join(",")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at most 100"), "{err}");
        // Lists count value by value: two of 100 fit, a third does not.
        let list = |name: &str| format!("\"{name}\":{{\"$in\":[{}]}}", values[..100].join(","));
        assert!(parse(&format!("{{{},{}}}", list("a"), list("b"))).is_ok());
        let err = parse(&format!("{{{},{},{}}}", list("a"), list("b"), list("c")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("200 comparisons"), "{err}");
    }

    #[test]
    fn cursors_are_bound_to_their_query() {
        let order = parse_order_by(Some("score,-created_at")).unwrap();
        assert_eq!(order.len(), 2, "created_at named: no tie-break key added");
        assert_eq!(parse_order_by(Some("-score")).unwrap().len(), 2);
        let after = After {
            keys: vec![
                KeyValue::Ranked(4, Some(Scalar::Number(Number::from(3)))),
                KeyValue::Millis(17),
            ],
            id: uuid::Uuid::now_v7().to_string(),
        };
        let fp = fingerprint("notes", &Value::Null, &order);
        let c = encode_cursor(&fp, &after);
        assert_eq!(decode_cursor(&c, &fp, &order).ok(), Some(after));
        let other = fingerprint("notes", &json!({"a": 1}), &order);
        assert!(decode_cursor(&c, &other, &order).is_err());
        assert!(decode_cursor("!!", &fp, &order).is_err());
    }
}
