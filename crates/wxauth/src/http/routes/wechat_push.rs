//! `/v1/wechat/push/{appid}`: WeChat's message push (消息推送) for one
//! app. The rules are in `platform::push`.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::Error;
use crate::http::AppState;
use crate::platform::actions::PushActions;
use crate::platform::push::{PushQuery, UrlCheck};

/// `GET /v1/wechat/push/{appid}`: answers `echostr` as plain text when
/// the signature is the app's (WeChat checks the URL so when it is saved
/// in the console).
pub(crate) async fn url_check(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    Query(check): Query<UrlCheck>,
) -> Result<Response, Error> {
    let echostr = state.pushes().check_url(&appid, &check)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        echostr,
    )
        .into_response())
}

/// `POST /v1/wechat/push/{appid}`: one pushed event, checked and read;
/// acted on once (a copy of one already taken is only acknowledged);
/// answered `success` (WeChat's acknowledgement, never encrypted). An
/// error (the database down) answers 5xx, and WeChat sends it again.
pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(appid): Path<String>,
    Query(query): Query<PushQuery>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Error> {
    let body = body.map_err(|e| {
        let too_large = e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE;
        state.pushes().unreadable(&appid, e.body_text(), too_large)
    })?;
    let push = state.pushes().receive(&appid, &query, &body)?;
    PushActions::new(
        state.pushes(),
        state.admin(),
        state.subscriptions(),
        state.image_checks(),
        state.auth(),
    )
    .act(&appid, &push)
    .await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response())
}
