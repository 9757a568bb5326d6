//! Each user's own documents, by collection.
//!
//! - Ownership comes only from the caller: another user's document is "not
//!   found" for every verb, whatever the body says.
//! - Creates honour `Idempotency-Key`: the same key from the same user gets
//!   the first answer and one document; the key with another request is refused.
//! - Lists filter and sort (`where`, `order_by`: see [`super::query`]) and
//!   page with an opaque cursor carrying the last document's sort key and
//!   id (keyset), so a page walk returns every document that existed when
//!   it started exactly once, whatever is inserted meanwhile.
//! - Shared collections (`public_read`, `admin_write`) are read by every
//!   user of the app; writes stay the owner's (`admin_write`: the server's).
//! - Replaces take an optional `If-Match` version; a moved version is 412.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Data;
use super::query;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::store::{
    After, CreateOutcome, DocumentQuery, DocumentRecord, Idempotency, KeyValue, NewDocument,
    ReplaceOutcome, Replacement, Scope, UserLimit, UserQuota,
};
use crate::vocab::Access;
use crate::vocab::Owner;

/// A document as the rules hand it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// UUIDv7.
    pub id: String,
    /// 1 at creation, +1 on each replace (also the `ETag`).
    pub version: i64,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
    /// The JSON object, as compact text (written by serde_json).
    pub data: String,
    /// The owner's user id, shown in shared collections only.
    pub owner: Option<String>,
}

impl Document {
    pub(super) fn from_record(r: DocumentRecord, shared: bool) -> Self {
        Self {
            owner: shared.then_some(r.owner),
            id: r.id,
            version: r.version,
            created_at: r.created_at,
            updated_at: r.updated_at,
            data: r.data,
        }
    }
}

fn quota(limits: &LimitsConfig) -> UserQuota {
    UserQuota {
        max_collections: i64::from(limits.collections_per_user),
        max_bytes: i64::try_from(limits.bytes_per_user).unwrap_or(i64::MAX),
    }
}

fn user_limit(limit: UserLimit, limits: &LimitsConfig) -> Error {
    Error::LimitExceeded(match limit {
        UserLimit::Collections => format!(
            "this user already has documents in the limit of {} collections (limits.collections_per_user)",
            limits.collections_per_user
        ),
        UserLimit::Bytes => format!(
            "this write would take the user's documents past the limit of {} bytes in all (limits.bytes_per_user)",
            limits.bytes_per_user
        ),
    })
}

/// A page's size when the request names none.
pub const DEFAULT_PAGE: u32 = 20;
/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

/// The `ETag` of a version.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

pub use crate::vocab::collections::check_collection;

fn check_object(body: Value) -> Result<Map<String, Value>> {
    match body {
        Value::Object(map) => Ok(map),
        other => Err(Error::InvalidRequest(format!(
            "a document must be a JSON object, not {}",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            }
        ))),
    }
}

/// A document id is a UUID; anything else cannot exist (and is a 404).
pub(super) fn known_id(id: &str) -> Result<()> {
    Uuid::parse_str(id)
        .map(|_| ())
        .map_err(|_| Error::NotFound("no such document".into()))
}

pub(super) fn not_found() -> Error {
    Error::NotFound("no such document".into())
}

fn check_idempotency_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::InvalidRequest(
            "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
        ));
    }
    Ok(())
}

/// A created document: stored now, or what the first create with the same
/// Idempotency-Key made (`replayed`), as that create answered it.
#[derive(Debug)]
pub struct Created {
    /// The document as created.
    pub document: Document,
    /// Whether this is the first answer to a repeated Idempotency-Key.
    pub replayed: bool,
}

impl Data {
    /// Creates a document in the caller's collection.
    pub async fn create(
        &self,
        owner: Owner<'_>,
        collection: &str,
        body: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Created> {
        check_collection(collection)?;
        self.check_client_write(collection)?;
        self.create_for(
            owner.user_id,
            owner.appid,
            collection,
            body,
            idempotency_key,
        )
        .await
    }

    /// Creates a document as the server (the operator's CLI): in any
    /// collection, `admin_write` included, owned by `owner` (a user id).
    pub async fn create_as_server(
        &self,
        owner: &str,
        collection: &str,
        body: Value,
    ) -> Result<Created> {
        check_collection(collection)?;
        let user = self
            .store
            .user(owner)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {owner:?}")))?;
        self.create_for(&user.id, &user.appid, collection, body, None)
            .await
    }

    async fn create_for(
        &self,
        user_id: &str,
        appid: &str,
        collection: &str,
        body: Value,
        idempotency_key: Option<&str>,
    ) -> Result<Created> {
        let data = Value::Object(check_object(body)?).to_string();
        let idempotency = match idempotency_key {
            Some(key) => {
                check_idempotency_key(key)?;
                let mut h = Sha256::new();
                h.update(collection.as_bytes());
                h.update([0]);
                h.update(data.as_bytes());
                Some(Idempotency {
                    key: key.to_owned(),
                    request_hash: h.finalize().to_vec(),
                })
            }
            None => None,
        };
        let limits = &self.limits;
        let outcome = self
            .store
            .create_document(NewDocument {
                id: Uuid::now_v7().to_string(),
                user_id: user_id.to_owned(),
                appid: appid.to_owned(),
                collection: collection.to_owned(),
                data: data.clone(),
                now: self.now_ms(),
                max_documents: i64::from(limits.documents_per_collection),
                quota: quota(limits),
                idempotency,
            })
            .await?;
        let shared = self.access(collection).shared();
        match outcome {
            CreateOutcome::Created(doc) => Ok(Created {
                document: Document::from_record(doc, shared),
                replayed: false,
            }),
            // The same key with the same request hash: the same data, so
            // the first answer is rebuilt exactly from what the key kept.
            CreateOutcome::Replayed(first) => Ok(Created {
                document: Document {
                    id: first.document_id,
                    version: 1,
                    created_at: first.created_at,
                    updated_at: first.created_at,
                    data,
                    owner: shared.then(|| user_id.to_owned()),
                },
                replayed: true,
            }),
            CreateOutcome::KeyReused => Err(Error::InvalidRequest(
                "this Idempotency-Key was already used with a different request".into(),
            )),
            CreateOutcome::LimitReached => Err(Error::LimitExceeded(format!(
                "collection {collection} already holds the limit of {} documents for this user (limits.documents_per_collection)",
                limits.documents_per_collection
            ))),
            CreateOutcome::UserLimitReached(limit) => Err(user_limit(limit, limits)),
        }
    }

    /// One document the caller may read: their own, or any of the app's
    /// in a shared collection.
    pub async fn get(&self, owner: Owner<'_>, collection: &str, id: &str) -> Result<Document> {
        check_collection(collection)?;
        known_id(id)?;
        let shared = self.access(collection).shared();
        self.store
            .document(&self.read_scope(owner, collection), id)
            .await?
            .map(|r| Document::from_record(r, shared))
            .ok_or_else(not_found)
    }

    /// Whose documents the caller reads in a collection.
    pub(super) fn read_scope(&self, owner: Owner<'_>, collection: &str) -> Scope {
        if self.access(collection).shared() {
            Scope::App {
                appid: owner.appid.to_owned(),
                collection: collection.to_owned(),
            }
        } else {
            Scope::Owner {
                user_id: owner.user_id.to_owned(),
                collection: collection.to_owned(),
            }
        }
    }

    /// Refuses a client's write to a collection only the server writes.
    fn check_client_write(&self, collection: &str) -> Result<()> {
        if self.access(collection) == Access::AdminWrite {
            return Err(Error::Forbidden(format!(
                "collection {collection} is written only by the server (access = admin_write)"
            )));
        }
        Ok(())
    }

    /// A page of the documents the caller reads in a collection, filtered
    /// and sorted, and the cursor of the next.
    pub async fn list(
        &self,
        owner: Owner<'_>,
        collection: &str,
        request: &ListRequest<'_>,
    ) -> Result<(Vec<Document>, Option<String>)> {
        check_collection(collection)?;
        let scope = self.read_scope(owner, collection);
        let shared = self.access(collection).shared();
        self.list_in(&scope, owner.user_id, shared, request).await
    }

    /// A page of the documents in `scope` (`me`: whom `"owner": "me"`
    /// names; `show_owner`: whether documents carry their owner).
    pub(super) async fn list_in(
        &self,
        scope: &Scope,
        me: &str,
        show_owner: bool,
        request: &ListRequest<'_>,
    ) -> Result<(Vec<Document>, Option<String>)> {
        let collection = scope.collection();
        let max = self.limits.page_size_max;
        let limit = match request.limit {
            None => DEFAULT_PAGE.min(max),
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    Error::InvalidRequest(format!("limit must be a number from 1 to {max}"))
                })?,
        };
        let (filter, where_value) = query::parse_where(request.filter, me)?;
        let order = query::parse_order_by(request.order_by)?;
        let fp = query::fingerprint(collection, &where_value, &order);
        let after = request
            .cursor
            .map(|c| query::decode_cursor(c, &fp, &order))
            .transpose()?;
        let mut docs = self
            .store
            .query_documents(&DocumentQuery {
                scope,
                filter: &filter,
                order: &order,
                after: after.as_ref(),
                limit: i64::from(limit) + 1,
            })
            .await?;
        let next = if docs.len() > limit as usize {
            docs.truncate(limit as usize);
            match docs.last() {
                Some(last) => {
                    let data: Value = serde_json::from_str(&last.data)
                        .map_err(|e| Error::internal_from("a stored document is not JSON", e))?;
                    let fields = crate::vocab::query::DocumentFields {
                        id: &last.id,
                        owner: &last.owner,
                        created_at: last.created_at,
                        updated_at: last.updated_at,
                    };
                    let keys = order
                        .iter()
                        .map(|k| KeyValue::of(&k.field, &fields, &data))
                        .collect();
                    Some(query::encode_cursor(
                        &fp,
                        &After {
                            keys,
                            id: last.id.clone(),
                        },
                    ))
                }
                None => None,
            }
        } else {
            None
        };
        Ok((
            docs.into_iter()
                .map(|r| Document::from_record(r, show_owner))
                .collect(),
            next,
        ))
    }

    /// How many documents the caller reads in a collection match `where`.
    pub async fn count(
        &self,
        owner: Owner<'_>,
        collection: &str,
        filter: Option<&str>,
    ) -> Result<u64> {
        check_collection(collection)?;
        let (filter, _) = query::parse_where(filter, owner.user_id)?;
        self.store
            .count_documents(&self.read_scope(owner, collection), &filter)
            .await
    }
}

/// What `GET /v1/data/{collection}` asks for, as text from the query string.
#[derive(Debug, Default, Clone, Copy)]
pub struct ListRequest<'a> {
    /// `where`: JSON.
    pub filter: Option<&'a str>,
    /// `order_by`: `priority,-created_at`.
    pub order_by: Option<&'a str>,
    /// `limit`: 1 to `limits.page_size_max`.
    pub limit: Option<&'a str>,
    /// `cursor`: a `next_cursor`.
    pub cursor: Option<&'a str>,
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// One of these versions.
    Versions(Vec<i64>),
}

/// Parses `If-Match`: `*`, or one or more entity tags (`"3"`, `W/"3"`).
/// Tags this server never issued match nothing (412 later); text that is
/// not an entity tag at all is a 400. A bare version number (`3`, the
/// `version` field as clients often send it) is taken as its tag.
pub fn parse_if_match(value: &str) -> Result<IfMatch> {
    let value = value.trim();
    if value == "*" {
        return Ok(IfMatch::Any);
    }
    if !value.is_empty() && value.len() <= 18 && value.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(IfMatch::Versions(vec![value.parse::<i64>().unwrap_or(-1)]));
    }
    let mut versions = Vec::new();
    for tag in value.split(',') {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        let inner = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .ok_or_else(|| {
                Error::InvalidRequest("If-Match must be \"*\" or entity tags such as \"3\"".into())
            })?;
        // A tag that is not one of our version numbers matches nothing.
        versions.push(inner.parse::<i64>().unwrap_or(-1));
    }
    Ok(IfMatch::Versions(versions))
}

impl Data {
    /// Replaces the data of one of the caller's documents.
    pub async fn replace(
        &self,
        owner: Owner<'_>,
        collection: &str,
        id: &str,
        body: Value,
        if_match: Option<IfMatch>,
    ) -> Result<Document> {
        check_collection(collection)?;
        self.check_client_write(collection)?;
        self.replace_as(owner, collection, id, body, if_match).await
    }

    /// Replaces one of `caller`'s documents, whatever the collection's
    /// access (the server writes `admin_write` collections this way).
    pub(super) async fn replace_as(
        &self,
        owner: Owner<'_>,
        collection: &str,
        id: &str,
        body: Value,
        if_match: Option<IfMatch>,
    ) -> Result<Document> {
        known_id(id)?;
        let data = Value::Object(check_object(body)?).to_string();
        let moved = || {
            Error::PreconditionFailed(
                "the document changed since that version (If-Match); fetch it again".into(),
            )
        };
        let if_version = match if_match {
            None | Some(IfMatch::Any) => None,
            Some(IfMatch::Versions(vs)) if vs.len() == 1 => {
                Some(vs[0]).filter(|v| *v > 0).or(Some(0))
            }
            Some(IfMatch::Versions(vs)) => {
                // Several tags: match against the current version, then update
                // only if it is still that version.
                let current = self.get(owner, collection, id).await?;
                if !vs.contains(&current.version) {
                    return Err(moved());
                }
                Some(current.version)
            }
        };
        let outcome = self
            .store
            .replace_document(Replacement {
                user_id: owner.user_id.to_owned(),
                collection: collection.to_owned(),
                id: id.to_owned(),
                data,
                if_version,
                now: self.now_ms(),
                quota: quota(&self.limits),
            })
            .await?;
        match outcome {
            ReplaceOutcome::Replaced(doc) => {
                Ok(Document::from_record(doc, self.access(collection).shared()))
            }
            ReplaceOutcome::NotFound => Err(not_found()),
            ReplaceOutcome::VersionMoved => Err(moved()),
            ReplaceOutcome::UserLimitReached(limit) => Err(user_limit(limit, &self.limits)),
        }
    }

    /// Deletes one of the caller's documents.
    pub async fn delete(&self, owner: Owner<'_>, collection: &str, id: &str) -> Result<()> {
        check_collection(collection)?;
        self.check_client_write(collection)?;
        self.delete_as(owner.user_id, collection, id).await
    }

    /// Deletes one of the user's documents, whatever the collection's access.
    pub(super) async fn delete_as(&self, user_id: &str, collection: &str, id: &str) -> Result<()> {
        known_id(id)?;
        if self.store.delete_document(user_id, collection, id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    /// Forgets idempotency keys older than a day (see `IDEMPOTENCY_TTL_MS`).
    pub async fn expire_idempotency_keys(&self) -> Result<u64> {
        self.store
            .expire_idempotency_keys(self.now_ms() - IDEMPOTENCY_TTL_MS)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections() {
        for ok in ["notes", "a", "x-1_y", &"a".repeat(64)] {
            assert!(check_collection(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Notes", "a b", "a/b", "笔记", &"a".repeat(65)] {
            assert!(check_collection(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn if_match() {
        assert_eq!(parse_if_match("*").ok(), Some(IfMatch::Any));
        assert_eq!(
            parse_if_match("\"3\"").ok(),
            Some(IfMatch::Versions(vec![3]))
        );
        assert_eq!(
            parse_if_match("W/\"3\", \"4\"").ok(),
            Some(IfMatch::Versions(vec![3, 4]))
        );
        assert_eq!(
            parse_if_match("\"abc\"").ok(),
            Some(IfMatch::Versions(vec![-1]))
        );
        assert_eq!(parse_if_match("3").ok(), Some(IfMatch::Versions(vec![3])));
        assert!(parse_if_match("3a").is_err());
        assert!(parse_if_match("-3").is_err());
        assert!(parse_if_match("").is_err());
    }

    #[test]
    fn idempotency_keys() {
        assert!(check_idempotency_key("a-b_c.123").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("has space").is_err());
        assert!(check_idempotency_key(&"k".repeat(256)).is_err());
    }
}
