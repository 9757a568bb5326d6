//! `/v1/wechat/push/{appid}`: WeChat's message push (消息推送) for one
//! app. The rules are in `platform::push`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::Error;
use crate::http::AppState;
use crate::platform::push::UrlCheck;

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
