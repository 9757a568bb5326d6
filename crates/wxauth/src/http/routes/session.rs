//! `POST /v1/login`, `POST /v1/token/refresh`, `POST /v1/logout`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::super::AppState;
use super::super::extract::{ApiJson, ClientIp};
use super::super::views::SessionView;
use crate::auth::Caller;
use crate::error::Result;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginRequest {
    code: String,
    #[serde(default)]
    appid: Option<String>,
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

pub(crate) async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<SessionView>> {
    let session = state.auth().refresh(&req.refresh_token).await?;
    Ok(Json(SessionView::from(session)))
}

pub(crate) async fn logout(State(state): State<AppState>, caller: Caller) -> Result<StatusCode> {
    state.auth().logout(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}
