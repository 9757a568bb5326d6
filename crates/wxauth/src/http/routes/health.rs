//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::super::{AppState, ErrorBody};
use crate::error::{Error, Result};

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Object)))]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers. `redis` says whether state is shared
/// right now (`up`), degraded to per-process (`down`: still ready, since
/// every instance keeps serving correctly) or not configured.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready: {\"status\": \"ready\", \"redis\": \"up\" | \"down\" | \"not_configured\"}", body = Object),
    (status = 503, description = "The database is unreachable", body = ErrorBody),
))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Json<Value>> {
    state.auth().ping_store().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness: database unreachable");
        Error::UpstreamUnavailable {
            message: "the database is not reachable".into(),
            retry_after: std::time::Duration::from_secs(1),
        }
    })?;
    let redis = match state.auth().redis() {
        None => "not_configured",
        Some(r) if r.is_up() => "up",
        Some(_) => "down",
    };
    Ok(Json(json!({"status": "ready", "redis": redis})))
}

/// Prometheus metrics (bind to a private address in production).
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.render_metrics(),
    )
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
pub(crate) async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json(),
    )
}
