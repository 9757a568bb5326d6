//! `POST /v1/introspect` (RFC 7662): a service asks whether an access token
//! is current and whose it is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use serde::Deserialize;

use super::super::extract::{ClientIp, bearer_token};
use super::super::{AppState, ErrorBody};
use crate::auth::Introspection;
use crate::error::{Error, Result};

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct IntrospectRequest {
    /// The access token to look at.
    #[schema(min_length = 1)]
    token: String,
    /// Accepted and ignored (only access tokens are introspected).
    #[serde(default)]
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// Whether an access token is current, and whose it is.
///
/// Authenticated with a service key that has the `introspect` scope
/// (`Authorization: Bearer <service key>`). The body is a form
/// (`token=…`, as RFC 7662 says) or JSON (`{"token": "…"}`). A logged-out,
/// expired, foreign or malformed token is `{"active": false}`, at once and
/// on every instance. Wrong or missing service keys are 401, and after 10
/// a minute from one address, 429.
#[utoipa::path(post, path = "/v1/introspect", tag = "identity", security(("service_key" = [])),
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded",
        description = "token=… (or the same as JSON)"),
    responses(
        (status = 200, description = "The token's state", body = Introspection),
        (status = 400, description = "invalid_request: no token", body = ErrorBody),
        (status = 401, description = "unauthorized: no or a wrong service key", body = ErrorBody),
        (status = 403, description = "forbidden: the key lacks the introspect scope", body = ErrorBody),
        (status = 429, description = "rate_limited: too many wrong service keys", body = ErrorBody),
    ))]
pub(crate) async fn introspect(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Introspection>> {
    state
        .auth()
        .service_keys()
        // A malformed header counts as a wrong key.
        .authenticate(
            bearer_token(&headers).ok().flatten(),
            ip,
            crate::vocab::ServiceScope::Introspect,
        )?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
    let req: IntrospectRequest = if is_json {
        super::super::json_body::parse(&body, state.settings().limits.json_depth)?
    } else {
        serde_urlencoded::from_bytes(&body).map_err(|_| {
            Error::InvalidRequest("the body must be a form with token=<access token>".into())
        })?
    };
    if req.token.is_empty() {
        return Err(Error::InvalidRequest("`token` is empty".into()));
    }
    Ok(Json(state.auth().introspect(&req.token).await?))
}
