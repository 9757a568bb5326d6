//! `/admin/v1/…`: the operator's API, for the developer's back office.
//!
//! Every route is behind [`gate`]: a service key (`Authorization: Bearer
//! <service key>`) with the route's scope (see [`crate::admin::scopes`]), and an audit
//! entry for every call that named a valid key, written before the answer
//! is sent. Handlers say what the call was about in an [`AuditNote`] on
//! their response.

use axum::Json;
use axum::extract::{Extension, MatchedPath, Path, Query, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::super::extract::{ApiJson, ClientIp, bearer_token};
use super::super::{AppState, ErrorBody};
use super::data::{
    DocumentPage, DocumentView, ListQuery, WHERE_DESCRIPTION, document_response, header_text,
};
use crate::admin::scopes::scope_for;
use crate::admin::{AccountView, AuditRecord, AuditView, ExportStream, UserExport, UserSummary};
use crate::auth::{FindBy, ServiceCaller};
use crate::data::Whose;
use crate::data::documents::{DEFAULT_PAGE, ListRequest, parse_if_match};
use crate::error::{Error, Result};
use crate::vocab::{Actor, AuditQuery, Target};

/// What an admin call was about, for its audit entry.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditNote {
    /// What the call was about, when the path does not say it all.
    target: Option<Target>,
    /// Ids, names and counts (never a value searched for, never a secret).
    detail: Value,
    /// The handler already wrote the entry (in the same commit as its
    /// change: an account deletion).
    written: bool,
}

impl AuditNote {
    fn about(target: Target) -> Self {
        Self {
            target: Some(target),
            detail: json!({}),
            written: false,
        }
    }

    fn with(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Authenticates the service key, checks the route's scope, runs the
/// route and appends the audit entry. Unknown keys (401) are not audited
/// (nobody to name; they are rate-limited per address instead); a known
/// key refused for its scope (403) is.
pub(crate) async fn gate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Response {
    // What the path names, unless the handler says more (so a refused or
    // failed call is recorded against its target too).
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
    let path_target = match (param("collection"), param("id")) {
        (Some(c), Some(id)) => Some(Target::Document {
            collection: c.to_owned(),
            id: id.to_owned(),
        }),
        (None, Some(id)) => Some(Target::User(id.to_owned())),
        (Some(c), None) => Some(Target::Collection(c.to_owned())),
        (None, None) => None,
    };
    let method = request.method().clone();
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let action = format!("{method} {template}");
    let presented = bearer_token(request.headers()).ok().flatten();
    let caller = match state.auth().service_keys().identify(presented, ip) {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let allowed = match scope_for(method.as_str(), &template) {
        Some(scope) => caller.require(scope),
        None => Err(Error::Forbidden(format!(
            "no scope grants {action} (service key {})",
            caller.id
        ))),
    };
    let actor = Actor::ServiceKey(caller.id.clone());
    let response = match allowed {
        Ok(()) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    };
    let note = response
        .extensions()
        .get::<AuditNote>()
        .cloned()
        .unwrap_or_default();
    if !note.written {
        let record = AuditRecord::new(actor, action.clone(), note.target.or(path_target))
            .status(response.status().as_u16())
            .detail(note.detail);
        if let Err(e) = state.admin().record(record).await {
            // The call is done; its record is not. Say so loudly, and fail
            // the answer so the operator's tool knows.
            tracing::error!(error = ?e, action, "the audit entry could not be written");
            return e.into_response();
        }
    }
    response
}

fn noted(note: AuditNote, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(note);
    response
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct FindQuery {
    /// The app (may be left out when the server serves one; with `unionid`,
    /// leaving it out searches every app).
    appid: Option<String>,
    /// WeChat's per-app user id.
    openid: Option<String>,
    /// WeChat's cross-app user id.
    unionid: Option<String>,
    /// The bound phone number without its country code (purePhoneNumber).
    phone: Option<String>,
}

/// Users found.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct UserList {
    /// At most 100.
    items: Vec<UserSummary>,
}

/// Find users of an app by openid, unionid or bound phone number (exactly
/// one of them). Scope `users:read`. The audit entry names which key was
/// searched by, never the value.
#[utoipa::path(get, path = "/admin/v1/users", tag = "admin", security(("service_key" = [])),
    params(FindQuery),
    responses(
        (status = 200, description = "Matching users", body = UserList),
        (status = 400, description = "invalid_request: not exactly one of openid, unionid, phone; or no appid with several apps", body = ErrorBody),
        (status = 401, description = "unauthorized: no or a wrong service key", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks users:read", body = ErrorBody),
    ))]
pub(crate) async fn find_users(
    State(state): State<AppState>,
    Query(q): Query<FindQuery>,
) -> Result<Response> {
    let by = match (q.openid, q.unionid, q.phone) {
        (Some(v), None, None) => FindBy::Openid(v),
        (None, Some(v), None) => FindBy::Unionid(v),
        (None, None, Some(v)) => FindBy::Phone(v),
        _ => {
            return Err(Error::InvalidRequest(
                "give exactly one of openid, unionid or phone".into(),
            ));
        }
    };
    let found = state.admin().find_users(q.appid.as_deref(), &by).await?;
    let note = AuditNote::default().with(json!({ "by": by.key(), "found": found.len() }));
    Ok(noted(note, Json(UserList { items: found })))
}

/// A user, their phone, sessions (never tokens), active session count,
/// last login and document count. Scope `users:read`.
#[utoipa::path(get, path = "/admin/v1/users/{id}", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks users:read", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn show_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let account = state.admin().account(&id).await?;
    let note = AuditNote::about(Target::User(id));
    Ok(noted(note, Json(account)))
}

/// End every session of the user, on every instance at once: their access
/// tokens are refused and their refresh tokens stop working. Scope
/// `sessions:revoke`.
#[utoipa::path(post, path = "/admin/v1/users/{id}/revoke", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 204, description = "Every session ended"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks sessions:revoke", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn revoke_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let ended = state.admin().revoke_user(&id).await?;
    let note = AuditNote::about(Target::User(id)).with(json!({ "sessions_ended": ended }));
    Ok(noted(note, StatusCode::NO_CONTENT))
}

/// An export as a streamed download: the body is written as the
/// documents are read (see `admin::export`), so neither time to the
/// first byte nor memory grows with the number of documents.
pub(super) fn export_response(export: ExportStream) -> Response {
    let disposition = format!(
        "attachment; filename=\"wxauth-export-{}.json\"",
        export.user_id
    );
    let chunks = futures_util::stream::unfold(export.chunks, |mut rx| async move {
        rx.recv().await.map(|chunk| {
            (
                chunk
                    .map(axum::body::Bytes::from)
                    .map_err(std::io::Error::other),
                rx,
            )
        })
    });
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

/// Everything wxauth holds about the user, as one JSON file: profile,
/// phone, sessions (without tokens) and every document in every
/// collection. Scope `users:read`.
#[utoipa::path(get, path = "/admin/v1/users/{id}/export", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "The export", body = UserExport),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks users:read", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 429, description = "rate_limited: limits.exports_at_once exports are already streaming", body = ErrorBody),
    ))]
pub(crate) async fn export_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let export = state.admin().export(&id).await?;
    let note =
        AuditNote::about(Target::User(id)).with(json!({ "documents": export.document_count }));
    Ok(noted(note, export_response(export)))
}

/// Delete the user and everything held about them (sessions, documents,
/// idempotency records, sealed secrets): rows are deleted, not flagged.
/// Their tokens stop working everywhere; a later login with the same
/// openid creates a new user. The audit log keeps only that the deletion
/// happened and the user id. Scope `users:write`.
#[utoipa::path(delete, path = "/admin/v1/users/{id}", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks users:write", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn delete_user(
    State(state): State<AppState>,
    Extension(caller): Extension<ServiceCaller>,
    Path(id): Path<String>,
) -> Result<Response> {
    state
        .admin()
        .delete_user(
            Actor::ServiceKey(caller.id),
            "DELETE /admin/v1/users/{id}",
            &id,
        )
        .await?;
    let note = AuditNote {
        written: true,
        ..AuditNote::default()
    };
    Ok(noted(note, StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
pub(crate) struct AdminListQuery {
    owner: Option<String>,
    appid: Option<String>,
    #[serde(flatten)]
    list: ListQuery,
}

/// Documents of one user (`owner`) or of every user of an app (`appid`)
/// in any collection, `admin_write` and private ones included, each with
/// its `owner`; filtered, sorted and paged as `GET /v1/data/{collection}`.
/// Scope `data:read`.
#[utoipa::path(get, path = "/admin/v1/data/{collection}", tag = "admin", security(("service_key" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name"),
        ("owner" = Option<String>, Query, description = "A user id: that user's documents"),
        ("appid" = Option<String>, Query, description = "Every user's documents in this app (the default app when neither is given)"),
        ("where" = Option<String>, Query, description = WHERE_DESCRIPTION),
        ("order_by" = Option<String>, Query, description = "As for GET /v1/data/{collection}"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1 to limits.page_size_max (default 20)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = DocumentPage),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks data:read", body = ErrorBody),
        (status = 404, description = "not_found: no such owner", body = ErrorBody),
    ))]
pub(crate) async fn list_documents(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(q): Query<AdminListQuery>,
) -> Result<Response> {
    let whose = match (q.owner, q.appid) {
        (Some(owner), None) => Whose::Owner(owner),
        (None, appid) => Whose::App(state.admin().app(appid.as_deref())?),
        (Some(_), Some(_)) => {
            return Err(Error::InvalidRequest(
                "give owner or appid, not both".into(),
            ));
        }
    };
    let request = ListRequest {
        filter: q.list.filter.as_deref(),
        order_by: q.list.order_by.as_deref(),
        limit: q.list.limit.as_deref(),
        cursor: q.list.cursor.as_deref(),
    };
    let (docs, next) = state
        .admin()
        .list_documents(&collection, &whose, &request)
        .await?;
    let note = AuditNote::about(match &whose {
        Whose::Owner(id) => Target::User(id.clone()),
        Whose::App(appid) => Target::App(appid.clone()),
    })
    .with(json!({ "collection": collection, "returned": docs.len() }));
    Ok(noted(
        note,
        Json(DocumentPage {
            items: docs.iter().map(DocumentView::from).collect(),
            next_cursor: next,
        }),
    ))
}

#[derive(Deserialize)]
pub(crate) struct OwnerQuery {
    owner: Option<String>,
}

/// Store a document owned by `owner` (a user id: the document belongs to
/// that user's app) in any collection, `admin_write` included. Scope
/// `data:write`.
#[utoipa::path(post, path = "/admin/v1/data/{collection}", tag = "admin", security(("service_key" = [])),
    params(
        ("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name"),
        ("owner" = String, Query, description = "The owning user's id"),
    ),
    request_body(content = Object, description = "Any JSON object"),
    responses(
        (status = 201, description = "Stored", body = DocumentView),
        (status = 400, description = "invalid_request: no owner, or a bad body", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks data:write", body = ErrorBody),
        (status = 404, description = "not_found: no such owner", body = ErrorBody),
        (status = 409, description = "limit_exceeded", body = ErrorBody),
    ))]
pub(crate) async fn create_document(
    State(state): State<AppState>,
    Path(collection): Path<String>,
    Query(q): Query<OwnerQuery>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let owner = q
        .owner
        .ok_or_else(|| Error::InvalidRequest("owner (the owning user's id) is required".into()))?;
    let created = state
        .admin()
        .create_document(&owner, &collection, body)
        .await?;
    let doc = created.document;
    let note = AuditNote::about(Target::Document {
        collection,
        id: doc.id.clone(),
    })
    .with(json!({ "owner": owner }));
    Ok(noted(note, document_response(StatusCode::CREATED, &doc)))
}

/// Any document, with its owner. Scope `data:read`.
#[utoipa::path(get, path = "/admin/v1/data/{collection}/{id}", tag = "admin", security(("service_key" = [])),
    params(("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name"), ("id" = String, Path, description = "A document id")),
    responses(
        (status = 200, description = "The document", body = DocumentView),
        (status = 400, description = "invalid_request: a bad collection name", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks data:read", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn get_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response> {
    let doc = state.admin().document(&collection, &id).await?;
    let note = AuditNote::about(Target::Document { collection, id });
    Ok(noted(note, document_response(StatusCode::OK, &doc)))
}

/// Replace any document (`If-Match` as for clients). Scope `data:write`.
#[utoipa::path(put, path = "/admin/v1/data/{collection}/{id}", tag = "admin", security(("service_key" = [])),
    params(("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name"), ("id" = String, Path, description = "A document id"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "As for PUT /v1/data/{collection}/{id}")),
    request_body(content = Object, description = "Any JSON object"),
    responses(
        (status = 200, description = "The new version", body = DocumentView),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks data:write", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 412, description = "precondition_failed", body = ErrorBody),
    ))]
pub(crate) async fn replace_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response> {
    let if_match = header_text(&headers, "if-match")?
        .map(parse_if_match)
        .transpose()?;
    let doc = state
        .admin()
        .replace_document(&collection, &id, body, if_match)
        .await?;
    let note = AuditNote::about(Target::Document { collection, id });
    Ok(noted(note, document_response(StatusCode::OK, &doc)))
}

/// Delete any document. Scope `data:write`.
#[utoipa::path(delete, path = "/admin/v1/data/{collection}/{id}", tag = "admin", security(("service_key" = [])),
    params(("collection" = String, Path, pattern = "^[a-z0-9_-]{1,64}$", description = "A collection name"), ("id" = String, Path, description = "A document id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "invalid_request: a bad collection name", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks data:write", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
    ))]
pub(crate) async fn delete_document(
    State(state): State<AppState>,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response> {
    let owner = state.admin().delete_document(&collection, &id).await?;
    let note =
        AuditNote::about(Target::Document { collection, id }).with(json!({ "owner": owner }));
    Ok(noted(note, StatusCode::NO_CONTENT))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditListQuery {
    /// Only entries about this target (`user:<id>`, `document:<collection>/<id>`).
    target: Option<String>,
    /// Only entries by this actor (`key:<id>`, `cli:<name>`, `user:<id>`).
    actor: Option<String>,
    /// 1 to limits.page_size_max (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// next_cursor of the previous page.
    cursor: Option<String>,
}

/// A page of the audit log.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPage {
    /// Newest first.
    items: Vec<AuditView>,
    /// For the next (older) page; null on the last.
    next_cursor: Option<String>,
}

/// Who did what, when, to whom: every admin call made with a valid key,
/// every operator CLI command, every account deletion. Newest first.
/// Scope `audit:read`.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", security(("service_key" = [])),
    params(AuditListQuery),
    responses(
        (status = 200, description = "A page", body = AuditPage),
        (status = 400, description = "invalid_request: a bad limit or cursor", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks audit:read", body = ErrorBody),
    ))]
pub(crate) async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditListQuery>,
) -> Result<Response> {
    let max = state.settings().limits.page_size_max;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE.min(max));
    if !(1..=max).contains(&limit) {
        return Err(Error::InvalidRequest(format!(
            "limit must be a number from 1 to {max} (limits.page_size_max)"
        )));
    }
    let before_id =
        q.cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::InvalidRequest("cursor is not one this server issued".into())
                })
            })
            .transpose()?;
    let mut entries = state
        .admin()
        .audit_log(&AuditQuery {
            target: q.target,
            actor: q.actor,
            before_id,
            limit: i64::from(limit) + 1,
        })
        .await?;
    let next_cursor = if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        entries.last().map(|e| e.id.to_string())
    } else {
        None
    };
    Ok(noted(
        AuditNote::default(),
        Json(AuditPage {
            items: entries,
            next_cursor,
        }),
    ))
}

/// A user's files, newest first (with URLs that work for the next hour).
/// Scope `files:read`.
#[utoipa::path(get, path = "/admin/v1/users/{id}/files", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id"), super::files::FileListQuery),
    responses(
        (status = 200, description = "A page", body = super::files::FilePage),
        (status = 400, description = "invalid_request: a bad limit or cursor", body = ErrorBody),
        (status = 401, description = "unauthorized: no or a wrong service key", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks files:read", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
    ))]
pub(crate) async fn list_user_files(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<super::files::FileListQuery>,
) -> Result<Response> {
    let limit = q.limit()?;
    let (items, next_cursor) = state.admin().files(&id, limit, q.cursor.as_deref()).await?;
    let note = AuditNote::about(Target::User(id)).with(json!({ "returned": items.len() }));
    Ok(noted(
        note,
        Json(super::files::FilePage { items, next_cursor }),
    ))
}

/// Delete one of a user's files: its URLs answer 404 at once and its bytes
/// leave the store. Scope `files:write`.
#[utoipa::path(delete, path = "/admin/v1/users/{id}/files/{file_id}", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id"), ("file_id" = String, Path, description = "The file id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "unauthorized: no or a wrong service key", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks files:write", body = ErrorBody),
        (status = 404, description = "not_found: no such file of that user", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
    ))]
pub(crate) async fn delete_user_file(
    State(state): State<AppState>,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response> {
    state.admin().delete_file(&id, &file_id).await?;
    let note = AuditNote::about(Target::File(file_id)).with(json!({ "owner": id }));
    Ok(noted(note, StatusCode::NO_CONTENT))
}

/// Send a subscribe message (订阅消息) to the user, with the app's shared
/// access token. Refused (409 `not_subscribed`) without calling WeChat when
/// the user's known consent for the template allows no send (each accept
/// of `wx.requestSubscribeMessage` allows one message); WeChat's own 43101
/// is the same answer. Each send is recorded with WeChat's answer, and its
/// delivery once WeChat pushes it. Scope `messages:send`.
#[utoipa::path(post, path = "/admin/v1/users/{id}/messages", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    request_body = crate::platform::subscriptions::MessageRequest,
    responses(
        (status = 201, description = "WeChat accepted it for delivery", body = crate::platform::subscriptions::MessageSent),
        (status = 400, description = "invalid_request: a bad template_id, data, page, miniprogram_state or lang (also WeChat's refusal of them)", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks messages:send", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 409, description = "not_subscribed: no consent left for this template", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 503, description = "upstream_unavailable: WeChat did not answer", body = ErrorBody),
    ))]
pub(crate) async fn send_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<crate::platform::subscriptions::MessageRequest>,
) -> Result<Response> {
    let sent = state.subscriptions().send(&id, &request).await;
    let note =
        AuditNote::about(Target::User(id)).with(json!({ "template_id": request.template_id }));
    let sent = sent?;
    Ok(noted(note, (StatusCode::CREATED, Json(sent))))
}

/// The user's consent per subscribe template (from WeChat's pushed events
/// and what the mini program reported) and their latest 50 sends with
/// WeChat's answers and delivery results. Scope `users:read`.
#[utoipa::path(get, path = "/admin/v1/users/{id}/subscriptions", tag = "admin", security(("service_key" = [])),
    params(("id" = String, Path, description = "The user id")),
    responses(
        (status = 200, description = "Consents and sends", body = crate::platform::subscriptions::SubscriptionsView),
        (status = 401, description = "unauthorized", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks users:read", body = ErrorBody),
        (status = 404, description = "not_found", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys from this address", body = ErrorBody),
    ))]
pub(crate) async fn user_subscriptions(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response> {
    let view = state.subscriptions().of_user(&id).await?;
    Ok(noted(AuditNote::about(Target::User(id)), Json(view)))
}
