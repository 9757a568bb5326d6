//! `POST /v1/login`, `POST /v1/token/refresh`, `POST /v1/logout`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::super::extract::{ApiJson, ClientIp};
use super::super::views::SessionView;
use super::super::{AppState, ErrorBody};
use crate::auth::Caller;
use crate::error::Result;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    /// The code from `wx.login()`.
    #[schema(pattern = "^[0-9A-Za-z_-]{1,128}$")]
    code: String,
    /// The mini program; may be left out when the server has a default app.
    #[serde(default)]
    appid: Option<String>,
}

/// Log in with a `wx.login()` code.
///
/// The same code again within `limits.login_code_replay_secs` (default 30 s;
/// a retry whose answer was lost) answers like the first time, with a
/// session of its own; later it is 400 `invalid_code`, as WeChat answers a
/// used code. Rate limits (429 with `Retry-After`) count per client address
/// first (the socket peer, or the right-most `X-Forwarded-For` entry that is
/// not one of `http.trusted_proxies`), then per app.
#[utoipa::path(post, path = "/v1/login", tag = "session", request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = SessionView),
        (status = 400, description = "invalid_request, invalid_code or unknown_app", body = ErrorBody),
        (status = 403, description = "user_blocked", body = ErrorBody),
        (status = 429, description = "rate_limited", body = ErrorBody),
        (status = 502, description = "upstream_error", body = ErrorBody),
        (status = 503, description = "upstream_unavailable", body = ErrorBody),
    ))]
pub(crate) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<SessionView>> {
    let session = state
        .auth()
        .login(&req.code, req.appid.as_deref(), ip)
        .await?;
    Ok(Json(SessionView::from(session)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    /// The refresh token of the latest login or refresh.
    #[schema(min_length = 1)]
    refresh_token: String,
}

/// Exchange a refresh token for a new pair (rotation; reuse revokes the session).
#[utoipa::path(post, path = "/v1/token/refresh", tag = "session", request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = SessionView),
        (status = 400, description = "invalid_request", body = ErrorBody),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<SessionView>> {
    let session = state.auth().refresh(&req.refresh_token, ip).await?;
    Ok(Json(SessionView::from(session)))
}

/// End this session: its access and refresh tokens stop working at once.
#[utoipa::path(post, path = "/v1/logout", tag = "session", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "unauthorized", body = ErrorBody),
    ))]
pub(crate) async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode> {
    state.auth().logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
