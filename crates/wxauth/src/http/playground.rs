//! The playground page `wxauth dev` serves at `/`: a phone-shaped mini
//! program running the real JavaScript client (the same file as
//! `clients/miniprogram/index.js`, embedded here, no CDN) through the wx shim,
//! beside a timeline of every call. Not part of the API: `wxauth serve` only
//! serves it when `[playground] enabled = true`.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use serde_json::json;

use super::AppState;

const INDEX: &str = include_str!("playground/index.html");
const APP_JS: &str = include_str!("playground/app.js");
const STYLE: &str = include_str!("playground/style.css");
const CLIENT_JS: &str = include_str!("../../../../clients/miniprogram/index.js");
const SHIM_JS: &str = include_str!("../../../../clients/miniprogram/shim/wx-shim.js");

fn js(body: &'static str) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        body,
    )
}

async fn config(State(state): State<AppState>) -> impl IntoResponse {
    let settings = state.settings();
    let appid = settings
        .default_appid
        .clone()
        .or_else(|| settings.apps.first().map(|a| a.appid.clone()));
    axum::Json(json!({
        "simURL": settings.playground_sim_url,
        "appid": appid,
    }))
}

/// The playground's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/playground/app.js", get(|| async { js(APP_JS) }))
        .route("/playground/wxauth.js", get(|| async { js(CLIENT_JS) }))
        .route("/playground/wx-shim.js", get(|| async { js(SHIM_JS) }))
        .route(
            "/playground/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route("/playground/config.json", get(config))
}
