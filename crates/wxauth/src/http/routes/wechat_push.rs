//! `/v1/wechat/push/{appid}`: WeChat's message push (消息推送) for one
//! app. The rules are in `platform::push`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::http::AppState;
use crate::platform::push::{PushQuery, UrlCheck};

/// The URL check's query.
#[derive(Debug, Deserialize)]
pub(crate) struct UrlCheckQuery {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    echostr: String,
}

/// `GET /v1/wechat/push/{appid}`: answers `echostr` as plain text when
/// the signature is the app's (WeChat checks the URL so when it is saved
/// in the console).
pub(crate) async fn url_check(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    Query(q): Query<UrlCheckQuery>,
) -> Result<Response, Error> {
    let echostr = state.pushes().check_url(
        &appid,
        &UrlCheck {
            signature: q.signature,
            timestamp: q.timestamp,
            nonce: q.nonce,
            echostr: q.echostr,
        },
    )?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        echostr,
    )
        .into_response())
}

/// A push's query.
#[derive(Debug, Deserialize)]
pub(crate) struct PushQueryParams {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    encrypt_type: String,
    #[serde(default)]
    msg_signature: String,
}

/// `POST /v1/wechat/push/{appid}`: one pushed event, checked and read;
/// answered `success` (WeChat's acknowledgement, never encrypted). Events
/// wxauth does not act on yet are acknowledged.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    Query(q): Query<PushQueryParams>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Error> {
    let body = body.map_err(|e| {
        let too_large = e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        state.pushes().unreadable(&appid, e.body_text(), too_large)
    })?;
    state.pushes().receive(
        &appid,
        &PushQuery {
            signature: q.signature,
            timestamp: q.timestamp,
            nonce: q.nonce,
            encrypt_type: q.encrypt_type,
            msg_signature: q.msg_signature,
        },
        &body,
    )?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response())
}
