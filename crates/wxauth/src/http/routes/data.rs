//! `/v1/data/{collection}` and `/v1/data/{collection}/{id}`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use super::super::extract::{ApiJson, DataCaller};
use super::super::{AppState, ErrorBody};
use crate::data::documents::{self, Created, Document, ListRequest, parse_if_match};
use crate::data::rfc3339;
use crate::error::{Error, Result};
use crate::vocab::Target;

pub(super) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                Error::InvalidRequest(format!("the {name} header must be visible ASCII"))
            })
        })
        .transpose()
}

pub(super) fn document_response(status: StatusCode, doc: &Document) -> Response {
    let mut response = (status, Json(DocumentView::from(doc))).into_response();
    set_etag(&mut response, doc.version);
    response
}

fn set_etag(response: &mut Response, version: i64) {
    if let Ok(tag) = HeaderValue::from_str(&documents::etag(version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
}

/// A document as the API returns it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DocumentView {
    /// The document id (UUIDv7).
    id: String,
    /// 1 at creation, +1 on each replace; also the `ETag`.
    version: i64,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
    /// The stored JSON object, sent as stored (never parsed again: a
    /// document the service accepted always goes back out).
    #[schema(value_type = Object)]
    data: Box<RawValue>,
    /// The owner's user id; only in shared collections (`public_read`,
    /// `admin_write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl From<&Document> for DocumentView {
    fn from(doc: &Document) -> Self {
        Self {
            id: doc.id.clone(),
            version: doc.version,
            created_at: rfc3339(doc.created_at),
            updated_at: rfc3339(doc.updated_at),
            data: RawValue::from_string(doc.data.clone())
                .unwrap_or_else(|_| RawValue::NULL.to_owned()),
            owner: doc.owner.clone(),
        }
    }
}

/// A page of documents.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DocumentPage {
    /// In the order asked for (newest first by default).
    pub(super) items: Vec<DocumentView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub(super) next_cursor: Option<String>,
}

/// Store a new document in one of the caller's collections (403
/// `forbidden` in an `admin_write` collection).
///
/// With `Idempotency-Key`, a retry with the same key and the same body
/// within 24 hours gets the first answer again, byte for byte (201 with
/// `Idempotent-Replayed: true`), and stores nothing more. The replay is the
/// first answer even when the document was replaced or deleted since (as
/// Stripe does): it says what the create did, not what the document is now.
/// The same key with another body is a 400.
#[utoipa::path(post, path = "/v1/data/{collection}", tag = "data", security(("bearer" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"),
        ("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = "^[\\x21-\\x7e]{1,255}$",
            description = "1 to 255 visible ASCII characters; makes retries of this create safe (remembered 24 hours, per user)"),
    ),
    request_body(content = Object, description = "Any JSON object"),
    responses(
        (status = 201, description = "Stored (or the first answer to this Idempotency-Key)", body = DocumentView),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the collection is admin_write", body = ErrorBody),
        (status = 409, description = "limit_exceeded", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "content_rejected: WeChat's content check refused a check_text field (field and label in the body)", body = ErrorBody),
        (status = 503, description = "upstream_unavailable: WeChat's content check gave no verdict ([content_check] on_unavailable = \"refuse\")", body = ErrorBody),
    ))]
pub(crate) async fn create(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path(collection): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let key = header_text(&headers, "idempotency-key")?;
    let checks = state.text_checks();
    let flags = checks.document(&caller, &collection, &body).await?;
    let Created { document, replayed } = state
        .data()
        .create(caller.owner(), &collection, body, key)
        .await?;
    if !replayed {
        let target = Target::Document {
            collection: collection.clone(),
            id: document.id.clone(),
        };
        checks.record(&caller, target, flags).await?;
    }
    let mut response = document_response(StatusCode::CREATED, &document);
    if replayed {
        // The first answer again: the same document, rebuilt from what the
        // key kept (version 1, as every create answers).
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    let id = document.id;
    if !id.is_empty()
        && let Ok(location) = HeaderValue::from_str(&format!("/v1/data/{collection}/{id}"))
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "where")]
    pub(super) filter: Option<String>,
    pub(super) order_by: Option<String>,
    pub(super) limit: Option<String>,
    pub(super) cursor: Option<String>,
}

/// The number of matching documents.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CountView {
    /// How many documents the caller can read match `where`.
    count: u64,
}

pub(super) const WHERE_DESCRIPTION: &str = "A JSON object (URL-encoded): field paths with dots (segments [A-Za-z0-9_], not all digits); \
a literal for equality; operators $eq $ne $gt $gte $lt $lte $in $nin $exists; top-level $and / $or arrays; \
a nested object is shorthand for dotted paths. `id`, `owner` (\"me\" = the caller), `created_at` and \
`updated_at` (RFC 3339 or Unix ms) are the document's own fields. Values compare by JSON type: a number \
never equals a string, a type mismatch matches nothing, a missing field matches only $exists:false, $ne \
and $nin. At most 20 conditions, nesting depth 4, 100 values in $in; past a bound, a 400 naming it. \
Example: {\"done\":false,\"priority\":{\"$gte\":2}}";

/// The documents the caller can read in a collection: filtered by
/// `where`, sorted by `order_by`, a page at a time.
///
/// Private collections hold the caller's own documents only; shared ones
/// (`public_read`, `admin_write`) every document of the app's users, each
/// with its `owner`. Paging is exact under any order: `next_cursor`
/// carries the last document's sort key and id, and is refused (400) with
/// another collection, `where` or `order_by`.
#[utoipa::path(get, path = "/v1/data/{collection}", tag = "data", security(("bearer" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"),
        ("where" = Option<String>, Query, description = WHERE_DESCRIPTION),
        ("order_by" = Option<String>, Query,
            description = "Comma-separated fields, `-` for descending (at most 4): data paths or `created_at`, `updated_at`, `id`, `owner`. By JSON type then value (missing < null < false < true < numbers < strings < arrays < objects), ties by id. Default `-created_at` (newest first)."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to limits.page_size_max (default 20)"),
        ("cursor" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,4096}$",
            description = "next_cursor of the previous page of the same query (opaque; one this server did not issue, or from another query, is a 400)"),
    ),
    responses(
        (status = 200, description = "A page", body = DocumentPage),
        (status = 400, description = "invalid_request: a bad where (invalid JSON, unknown operator, bad field path, past a bound), order_by, limit or cursor; the message names it", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn list(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path(collection): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DocumentPage>> {
    let request = ListRequest {
        filter: q.filter.as_deref(),
        order_by: q.order_by.as_deref(),
        limit: q.limit.as_deref(),
        cursor: q.cursor.as_deref(),
    };
    let (docs, next) = state
        .data()
        .list(caller.owner(), &collection, &request)
        .await?;
    Ok(Json(DocumentPage {
        items: docs.iter().map(DocumentView::from).collect(),
        next_cursor: next,
    }))
}

#[derive(Deserialize)]
pub(crate) struct CountQuery {
    #[serde(rename = "where")]
    filter: Option<String>,
}

/// How many documents the caller can read in a collection match `where`.
#[utoipa::path(get, path = "/v1/data/{collection}/_count", tag = "data", security(("bearer" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"),
        ("where" = Option<String>, Query, description = WHERE_DESCRIPTION),
    ),
    responses(
        (status = 200, description = "The count", body = CountView),
        (status = 400, description = "invalid_request: a bad where; the message names the problem", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn count(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path(collection): Path<String>,
    Query(q): Query<CountQuery>,
) -> Result<Json<CountView>> {
    let count = state
        .data()
        .count(caller.owner(), &collection, q.filter.as_deref())
        .await?;
    Ok(Json(CountView { count }))
}

/// One document the caller can read (their own, or any in a shared
/// collection), with its `ETag`.
#[utoipa::path(get, path = "/v1/data/{collection}/{id}", tag = "data", security(("bearer" = [])),
    params(("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"), ("id" = String, Path, description = "A document id (a UUID); anything else is a 404")),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 400, description = "invalid_request: a collection name that does not match the pattern", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 404, description = "not_found (also another user's document)", body = ErrorBody),
    ))]
pub(crate) async fn get(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response> {
    let doc = state.data().get(caller.owner(), &collection, &id).await?;
    Ok(document_response(StatusCode::OK, &doc))
}

/// Replace one of the caller's documents; `If-Match` makes it conditional.
#[utoipa::path(put, path = "/v1/data/{collection}/{id}", tag = "data", security(("bearer" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"),
        ("id" = String, Path, description = "A document id (a UUID); anything else is a 404"),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = r#"^(\*|[0-9]{1,18}|(W/)?"[\x21\x23-\x2b\x2d-\x7e]*"( *, *(W/)?"[\x21\x23-\x2b\x2d-\x7e]*")*)$"#,
            description = "`*`, the ETag(s) this replace is based on (`\"3\"`, `W/\"3\", \"4\"`) or a bare version number (`3`); a tag this server did not issue matches nothing (412)"),
    ),
    request_body(content = Object, description = "Any JSON object"),
    responses(
        (status = 200, description = "The new version", body = DocumentView),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the collection is admin_write", body = ErrorBody),
        (status = 404, description = "not_found (also another user's document in a shared collection)", body = ErrorBody),
        (status = 409, description = "limit_exceeded: the new data would pass the user's byte limit", body = ErrorBody),
        (status = 412, description = "precondition_failed: the version moved on", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 422, description = "content_rejected: WeChat's content check refused a check_text field (field and label in the body)", body = ErrorBody),
        (status = 503, description = "upstream_unavailable: WeChat's content check gave no verdict ([content_check] on_unavailable = \"refuse\")", body = ErrorBody),
    ))]
pub(crate) async fn replace(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let if_match = header_text(&headers, "if-match")?
        .map(parse_if_match)
        .transpose()?;
    let checks = state.text_checks();
    let flags = checks.document(&caller, &collection, &body).await?;
    let doc = state
        .data()
        .replace(caller.owner(), &collection, &id, body, if_match)
        .await?;
    let target = Target::Document {
        collection: collection.clone(),
        id: id.clone(),
    };
    checks.record(&caller, target, flags).await?;
    Ok(document_response(StatusCode::OK, &doc))
}

/// Delete one of the caller's documents.
#[utoipa::path(delete, path = "/v1/data/{collection}/{id}", tag = "data", security(("bearer" = [])),
    params(("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name: [a-z0-9_-]{1,64}"), ("id" = String, Path, description = "A document id (a UUID); anything else is a 404")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "invalid_request: a collection name that does not match the pattern", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the collection is admin_write", body = ErrorBody),
        (status = 404, description = "not_found (also another user's document in a shared collection)", body = ErrorBody),
    ))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    DataCaller(caller): DataCaller,
    Path((collection, id)): Path<(String, String)>,
) -> Result<StatusCode> {
    state
        .data()
        .delete(caller.owner(), &collection, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
