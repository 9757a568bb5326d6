//! CloudBase's (微信云开发) export of one collection: a JSON object a line,
//! dates as `{"$date": …}` (an ISO string or Unix milliseconds). The
//! owner is `_openid`, the user of the app with that openid (created when
//! missing); `_id` is kept as `_legacy_id`.

use serde_json::{Map, Value};

use super::{Ordered, RowProblem, parse_time};

/// The platform's name in derived ids and the user map.
pub const PLATFORM: &str = "cloudbase";

/// Fields read (in this order) for a document's own times, when they hold
/// a date. CloudBase keeps none of its own, so these are the names apps
/// use by convention.
const CREATED: &[&str] = &[
    "_createTime",
    "createTime",
    "createdAt",
    "create_time",
    "created_at",
];
const UPDATED: &[&str] = &[
    "_updateTime",
    "updateTime",
    "updatedAt",
    "update_time",
    "updated_at",
];

/// A row of the export.
#[derive(Debug)]
pub struct CloudbaseRow {
    /// `_id`.
    pub legacy_id: String,
    /// `_openid`: whose it is.
    pub openid: String,
    /// The other fields, converted, with `_legacy_id`.
    pub data: Map<String, Value>,
    /// From the first of `CREATED` holding a date.
    pub created_at: Option<i64>,
    /// From the first of `UPDATED` holding a date.
    pub updated_at: Option<i64>,
}

/// Converts one row, or says why it cannot be imported.
pub fn row(row: Ordered) -> Result<CloudbaseRow, RowProblem> {
    let legacy_id = match row.get("_id") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => id.clone(),
        Some(Value::Object(m)) => match m.get("$oid") {
            Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => id.clone(),
            _ => return Err(no_id()),
        },
        _ => return Err(no_id()),
    };
    let openid = match row.get("_openid") {
        Some(Value::String(o)) if !o.is_empty() && o.len() <= 128 => o.clone(),
        _ => {
            return Err(RowProblem::new(
                "no_openid",
                "the row has no _openid (written by a cloud function or the console, it belongs to no user)",
            ));
        }
    };
    let created_at = CREATED.iter().find_map(|k| row.get(k).and_then(time_of));
    let updated_at = UPDATED.iter().find_map(|k| row.get(k).and_then(time_of));
    let mut data = Map::new();
    for (k, v) in row.into_fields() {
        if matches!(k.as_str(), "_id" | "_openid") {
            continue;
        }
        data.insert(k, convert(v));
    }
    data.insert("_legacy_id".into(), Value::String(legacy_id.clone()));
    Ok(CloudbaseRow {
        legacy_id,
        openid,
        data,
        created_at,
        updated_at,
    })
}

fn no_id() -> RowProblem {
    RowProblem::new(
        "no_id",
        "the row has no _id (a string of at most 128 characters)",
    )
}

/// Unix milliseconds of a `{"$date": …}` value.
fn time_of(v: &Value) -> Option<i64> {
    let date = v.as_object()?.get("$date")?;
    match date {
        Value::String(s) => parse_time(s),
        Value::Number(n) => n.as_i64(),
        Value::Object(m) => m.get("$numberLong")?.as_str()?.parse().ok(),
        _ => None,
    }
}

/// A date as its ISO string (UTC, milliseconds); everything else as it is.
fn convert(v: Value) -> Value {
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("$date") => {
            match time_of(&Value::Object(m.clone())) {
                Some(ms) => Value::String(super::iso_millis(ms)),
                None => Value::Object(m),
            }
        }
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, convert(v))).collect()),
        Value::Array(a) => Value::Array(a.into_iter().map(convert).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ordered(v: Value) -> Ordered {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn dates_become_iso_strings_and_times() {
        let r = row(ordered(serde_json::json!({
            "_id": "a1", "_openid": "oX", "createTime": {"$date": 1_600_000_000_123_i64},
            "due": {"$date": "2020-09-13T12:26:40.123Z"},
            "steps": [{"at": {"$date": {"$numberLong": "1600000000123"}}}]
        })))
        .unwrap();
        assert_eq!(r.created_at, Some(1_600_000_000_123));
        assert_eq!(r.updated_at, None);
        assert_eq!(r.data["createTime"], "2020-09-13T12:26:40.123Z");
        assert_eq!(r.data["due"], "2020-09-13T12:26:40.123Z");
        assert_eq!(r.data["steps"][0]["at"], "2020-09-13T12:26:40.123Z");
        assert_eq!(r.data["_legacy_id"], "a1");
        assert!(r.data.get("_openid").is_none());
        assert_eq!(
            row(ordered(serde_json::json!({"_id": "a2"})))
                .unwrap_err()
                .code,
            "no_openid"
        );
    }
}
