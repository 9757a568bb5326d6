//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::super::AppState;
use crate::error::{Error, Result};

pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>> {
    state.auth().store().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        Error::UpstreamUnavailable {
            message: "the database is not reachable".into(),
            retry_after: std::time::Duration::from_secs(1),
        }
    })?;
    Ok(Json(json!({"status": "ready"})))
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.render_metrics(),
    )
}
