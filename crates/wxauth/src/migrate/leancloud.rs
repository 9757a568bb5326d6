//! LeanCloud's export (the console's 数据导出: one JSON Lines file per
//! class, each line an object as its REST API returns it) in wxauth's
//! terms: `_User` rows with a mini-program identity become users; every
//! other row a document owned by one of them.
//!
//! Values keep their meaning in plain JSON: `{"__type": "Date", "iso"}` is
//! the ISO string, a pointer the new id of the row it names (a user's id
//! for `_User`), a GeoPoint `{"latitude", "longitude"}`, a file its URL,
//! `Bytes` its base64 text (a file fetched by `--fetch-files` is the new
//! file: `{"id", "url", "name"}`, the URL only when public); a relation (its rows live in `_Join` classes
//! the export does not hold) is left out. Each of those is counted for the
//! report.

use serde_json::{Map, Value};

use super::ids::derived_id;
use super::report::ValueNotes;
use super::{Ordered, RowProblem, parse_time};

/// The platform's name in derived ids and the user map.
pub const PLATFORM: &str = "leancloud";

/// The class of users.
pub const USER_CLASS: &str = "_User";

/// The class of files.
pub const FILE_CLASS: &str = "_File";

/// A `_File` row: where its bytes are, and whose they are.
#[derive(Debug, Clone)]
pub struct LegacyFile {
    /// objectId.
    pub legacy_id: String,
    /// Where its bytes can be downloaded (http or https).
    pub url: String,
    /// The name it was uploaded with.
    pub name: Option<String>,
    /// The `_User` objectId of its owner: `metaData.owner`, else the one
    /// user its ACL lets write.
    pub owner: Option<String>,
    /// Whether everyone could read it (no ACL, or `"*": {"read": true}`).
    pub public: bool,
    /// createdAt.
    pub created_at: Option<i64>,
}

/// A `_File` row as a file to fetch, or why it cannot be one.
pub fn file(row: &Ordered) -> Result<LegacyFile, RowProblem> {
    let legacy_id = object_id(row)?;
    let url = match row.get("url") {
        Some(Value::String(u)) if u.starts_with("https://") || u.starts_with("http://") => {
            u.clone()
        }
        _ => {
            return Err(RowProblem::new(
                "bad_url",
                "the file has no http or https url to fetch it from",
            ));
        }
    };
    let acl = match row.get("ACL") {
        Some(Value::Object(acl)) => Some(acl),
        _ => None,
    };
    let public = acl.is_none_or(|a| {
        a.get("*")
            .and_then(|s| s.get("read"))
            .and_then(Value::as_bool)
            == Some(true)
    });
    let acl_owner = acl.map(acl_writers).and_then(|w| match w.as_slice() {
        [one] => Some((*one).to_owned()),
        _ => None,
    });
    let meta_owner = row
        .get("metaData")
        .and_then(|m| m.get("owner"))
        .and_then(Value::as_str)
        // Files uploaded by no one in particular say "unknown".
        .filter(|o| !o.is_empty() && *o != "unknown")
        .map(str::to_owned);
    Ok(LegacyFile {
        legacy_id,
        url,
        name: row.get("name").and_then(Value::as_str).map(str::to_owned),
        owner: meta_owner.or(acl_owner),
        public,
        created_at: row.get("createdAt").and_then(time_of),
    })
}

/// The `_File` objectIds a row's values name (file values and pointers
/// to `_File`), so a batch looks them all up at once.
pub fn file_refs(row: &Ordered, out: &mut Vec<String>) {
    for (_, v) in row.fields() {
        files_named(v, out);
    }
}

fn files_named(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(id) = file_named(m) {
                out.push(id.to_owned());
                return;
            }
            for v in m.values() {
                files_named(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| files_named(v, out)),
        _ => {}
    }
}

/// The `_File` objectId of a file value or a pointer to `_File`.
fn file_named(m: &Map<String, Value>) -> Option<&str> {
    match m.get("__type").and_then(Value::as_str)? {
        "File" => m.get("objectId")?.as_str(),
        "Pointer" => match pointer(m)? {
            (FILE_CLASS, id) => Some(id),
            _ => None,
        },
        _ => None,
    }
}

/// A `_User` row with a mini-program identity.
#[derive(Debug, Clone)]
pub struct LegacyUser {
    /// objectId.
    pub legacy_id: String,
    /// `authData.lc_weapp.openid`.
    pub openid: String,
    /// From `lc_weapp.unionid`, `lc_weapp_union.uid` or `_weixin_unionid.uid`.
    pub unionid: Option<String>,
    /// `nickName` and `avatarUrl` as the profile's `nickname`, `avatar_url`.
    pub profile: Map<String, Value>,
    /// createdAt, Unix milliseconds (None when unreadable).
    pub created_at: Option<i64>,
    /// updatedAt, Unix milliseconds.
    pub updated_at: Option<i64>,
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for p in path {
        at = at.get(p)?;
    }
    at.as_str().filter(|s| !s.is_empty())
}

/// The objectId of a row.
pub fn object_id(row: &Ordered) -> Result<String, RowProblem> {
    match row.get("objectId") {
        Some(Value::String(id)) if !id.is_empty() && id.len() <= 128 => Ok(id.clone()),
        _ => Err(RowProblem::new(
            "no_object_id",
            "the row has no objectId (a string of at most 128 characters)",
        )),
    }
}

/// A `_User` row as a user, or why it cannot be one.
pub fn user(row: &Ordered) -> Result<LegacyUser, RowProblem> {
    let legacy_id = object_id(row)?;
    let auth = row.get("authData").cloned().unwrap_or(Value::Null);
    let Some(openid) = str_at(&auth, &["lc_weapp", "openid"]) else {
        return Err(RowProblem::new(
            "no_wechat_identity",
            "the user has no mini-program identity (authData.lc_weapp.openid): wxauth has no password or other accounts",
        ));
    };
    let unionid = [
        &["lc_weapp", "unionid"][..],
        &["lc_weapp_union", "uid"],
        &["_weixin_unionid", "uid"],
    ]
    .iter()
    .find_map(|p| str_at(&auth, p))
    .map(str::to_owned);
    let mut profile = Map::new();
    for (from, to) in [("nickName", "nickname"), ("avatarUrl", "avatar_url")] {
        if let Some(Value::String(v)) = row.get(from)
            && !v.is_empty()
        {
            profile.insert(to.into(), Value::String(v.clone()));
        }
    }
    Ok(LegacyUser {
        legacy_id,
        openid: openid.to_owned(),
        unionid,
        profile,
        created_at: row.get("createdAt").and_then(time_of),
        updated_at: row.get("updatedAt").and_then(time_of),
    })
}

/// A time as the export writes it: an ISO string or a Date object.
fn time_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => parse_time(s),
        Value::Object(m) if m.get("__type").and_then(Value::as_str) == Some("Date") => {
            m.get("iso").and_then(Value::as_str).and_then(parse_time)
        }
        _ => None,
    }
}

/// The `_User` objectIds a row names (its ACL's writers and every user
/// pointer), so a batch looks them all up at once.
pub fn user_refs(row: &Ordered, out: &mut Vec<String>) {
    if let Some(Value::Object(acl)) = row.get("ACL") {
        out.extend(acl_writers(acl).into_iter().map(str::to_owned));
    }
    for (_, v) in row.fields() {
        pointers_to_users(v, out);
    }
}

fn pointers_to_users(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some((class, id)) = pointer(m) {
                if class == USER_CLASS {
                    out.push(id.to_owned());
                }
                return;
            }
            for v in m.values() {
                pointers_to_users(v, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|v| pointers_to_users(v, out)),
        _ => {}
    }
}

/// `(className, objectId)` of a pointer object.
fn pointer(m: &Map<String, Value>) -> Option<(&str, &str)> {
    if m.get("__type").and_then(Value::as_str) != Some("Pointer") {
        return None;
    }
    Some((m.get("className")?.as_str()?, m.get("objectId")?.as_str()?))
}

/// The users an ACL lets write (roles and `*` are not users).
fn acl_writers(acl: &Map<String, Value>) -> Vec<&str> {
    acl.iter()
        .filter(|(k, v)| {
            k.as_str() != "*"
                && !k.starts_with("role:")
                && v.get("write").and_then(Value::as_bool) == Some(true)
        })
        .map(|(k, _)| k.as_str())
        .collect()
}

/// A row of a class other than `_User`, as a document.
#[derive(Debug)]
pub struct LegacyDocument {
    /// objectId (kept as `_legacy_id`).
    pub legacy_id: String,
    /// The owner's user id.
    pub owner: String,
    /// The fields, converted (with `_legacy_id`).
    pub data: Map<String, Value>,
    /// createdAt (None when unreadable).
    pub created_at: Option<i64>,
    /// updatedAt.
    pub updated_at: Option<i64>,
    /// Whether its ACL lets everyone read it.
    pub public_read: bool,
}

/// What the references of a batch's rows became.
pub struct Resolved<'a> {
    /// The user id of a `_User` objectId that was imported.
    pub user: &'a dyn Fn(&str) -> Option<String>,
    /// The value a `_File` objectId's file fields become, when the file
    /// was fetched.
    pub file: &'a dyn Fn(&str) -> Option<Value>,
}

/// Converts a row of `class`.
pub fn document(
    appid: &str,
    row: Ordered,
    refs: &Resolved,
    notes: &mut ValueNotes,
) -> Result<LegacyDocument, RowProblem> {
    let user = refs.user;
    let legacy_id = object_id(&row)?;
    let acl = match row.get("ACL") {
        Some(Value::Object(acl)) => Some(acl.clone()),
        _ => None,
    };
    let public_read = acl
        .as_ref()
        .and_then(|a| a.get("*"))
        .and_then(|s| s.get("read"))
        .and_then(Value::as_bool)
        == Some(true);
    let writers = acl.as_ref().map(acl_writers).unwrap_or_default();
    let acl_owner = match writers.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let first_pointer = row.fields().find_map(|(_, v)| match v {
        Value::Object(m) => pointer(m)
            .filter(|(class, _)| *class == USER_CLASS)
            .map(|(_, id)| id),
        _ => None,
    });
    let owner = acl_owner
        .and_then(user)
        .or_else(|| first_pointer.and_then(user))
        .ok_or_else(|| {
            let acl = match acl_owner {
                Some(id) => format!("its ACL's one writer {id} is not one"),
                None => "its ACL names no single writer".to_owned(),
            };
            let pointer = match first_pointer {
                Some(id) => format!("its first _User pointer {id} is not one"),
                None => "it has no _User pointer".to_owned(),
            };
            RowProblem::new(
                "no_owner",
                format!("no owner among the imported users: {acl}, and {pointer}"),
            )
        })?;
    let created_at = row.get("createdAt").and_then(time_of);
    let updated_at = row.get("updatedAt").and_then(time_of);
    let mut data = Map::new();
    for (k, v) in row.into_fields() {
        if matches!(k.as_str(), "objectId" | "createdAt" | "updatedAt" | "ACL") {
            continue;
        }
        let top_pointer = match &v {
            Value::Object(m) => pointer(m).filter(|(c, _)| !c.starts_with('_')).is_some(),
            _ => false,
        };
        if let Some(v) = convert(appid, v, refs, notes) {
            if top_pointer {
                notes.pointer_fields.insert(k.clone());
            }
            data.insert(k, v);
        }
    }
    data.insert("_legacy_id".into(), Value::String(legacy_id.clone()));
    Ok(LegacyDocument {
        legacy_id,
        owner,
        data,
        created_at,
        updated_at,
        public_read,
    })
}

/// One value in plain JSON; None leaves the field out (a relation).
fn convert(appid: &str, v: Value, refs: &Resolved, notes: &mut ValueNotes) -> Option<Value> {
    match v {
        Value::Object(m) => {
            if let Some(fetched) = file_named(&m).and_then(refs.file) {
                notes.files_fetched += 1;
                return Some(fetched);
            }
            let kind = m.get("__type").and_then(Value::as_str).map(str::to_owned);
            match kind.as_deref() {
                Some("Date") => match m.get("iso") {
                    Some(Value::String(iso)) => Some(Value::String(iso.clone())),
                    _ => Some(Value::Object(m)),
                },
                Some("Pointer") => Some(convert_pointer(appid, m, refs.user, notes)),
                Some("GeoPoint") => {
                    let mut point = Map::new();
                    for k in ["latitude", "longitude"] {
                        point.insert(k.into(), m.get(k).cloned().unwrap_or(Value::Null));
                    }
                    Some(Value::Object(point))
                }
                Some("File") => {
                    notes.files_as_urls += 1;
                    match m.get("url") {
                        Some(Value::String(url)) => Some(Value::String(url.clone())),
                        _ => Some(Value::Object(m)),
                    }
                }
                Some("Bytes") => {
                    notes.bytes_as_base64 += 1;
                    Some(m.get("base64").cloned().unwrap_or(Value::Null))
                }
                Some("Relation") => {
                    notes.relations_left_out += 1;
                    None
                }
                _ => Some(Value::Object(
                    m.into_iter()
                        .filter_map(|(k, v)| convert(appid, v, refs, notes).map(|v| (k, v)))
                        .collect(),
                )),
            }
        }
        Value::Array(a) => Some(Value::Array(
            a.into_iter()
                .map(|v| convert(appid, v, refs, notes).unwrap_or(Value::Null))
                .collect(),
        )),
        other => Some(other),
    }
}

fn convert_pointer(
    appid: &str,
    m: Map<String, Value>,
    user: &dyn Fn(&str) -> Option<String>,
    notes: &mut ValueNotes,
) -> Value {
    let Some((class, id)) = pointer(&m) else {
        return Value::Object(m);
    };
    if class == USER_CLASS {
        return match user(id) {
            Some(user_id) => Value::String(user_id),
            None => {
                notes.pointers_kept += 1;
                Value::Object(m)
            }
        };
    }
    if class.starts_with('_') {
        // _File, _Role, _Installation…: not imported as rows.
        notes.pointers_kept += 1;
        return Value::Object(m);
    }
    Value::String(derived_id(PLATFORM, appid, class, id))
}

/// The collection a class becomes: its name in snake_case (`BlogPost` →
/// `blog_post`, `HTTPLog` → `http_log`), or None when that cannot be a
/// collection name.
pub fn collection_of(class: &str) -> Option<String> {
    let chars: Vec<char> = class.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    crate::vocab::check_collection(&out).ok().map(|()| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_become_snake_case_collections() {
        for (class, collection) in [
            ("Todo", Some("todo")),
            ("BlogPost", Some("blog_post")),
            ("HTTPLog", Some("http_log")),
            ("todo_item", Some("todo_item")),
            ("Todo2List", Some("todo2_list")),
            ("Order-Line", Some("order-line")),
            ("订单", None),
            ("Has Space", None),
            ("", None),
        ] {
            assert_eq!(collection_of(class).as_deref(), collection, "{class}");
        }
    }
}
