//! The one mapping from errors to responses, and the middleware that writes
//! every error body as `{"error", "message", "request_id"}`.
//!
//! `IntoResponse` for [`Error`] has no side effects: it sets the status and
//! headers and stores the error in the response's extensions. The
//! `envelope` middleware, which knows the request id and runs inside the
//! request's span, writes the body and logs internal causes. It also wraps
//! the framework's own errors (unknown route, wrong method, oversized body)
//! so no response leaves in another shape.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// The contract's error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code, e.g. `invalid_request`.
    pub error: String,
    /// What happened, for the developer.
    pub message: String,
    /// The request's id (also in the `x-request-id` header).
    pub request_id: String,
    /// `content_rejected`: the refused field's path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// `content_rejected`: WeChat's label for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<i64>,
}

/// What the envelope middleware needs to write an error body.
#[derive(Debug, Clone)]
struct ErrorInfo {
    code: &'static str,
    message: String,
    internal_cause: Option<String>,
    /// The refused field and its label (`content_rejected`).
    rejected: Option<(String, i64)>,
}

/// The HTTP status an error answers with (also what the operator CLI's
/// audit entries record for a failed command).
pub fn status_of(err: &Error) -> u16 {
    status_and_code(err).0.as_u16()
}

/// The contract's error code for an error (`not_found`, …).
pub fn error_code(err: &Error) -> &'static str {
    status_and_code(err).1
}

fn status_and_code(err: &Error) -> (StatusCode, &'static str) {
    match err {
        Error::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        Error::InvalidCode(_) => (StatusCode::BAD_REQUEST, "invalid_code"),
        Error::UnknownApp(_) => (StatusCode::BAD_REQUEST, "unknown_app"),
        Error::DecryptFailed(_) => (StatusCode::BAD_REQUEST, "decrypt_failed"),
        Error::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
        Error::UserBlocked => (StatusCode::FORBIDDEN, "user_blocked"),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        Error::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
        Error::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
        Error::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
        Error::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
        Error::HeaderTooLarge(_) => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
        ),
        Error::LimitExceeded(_) => (StatusCode::CONFLICT, "limit_exceeded"),
        Error::NotSubscribed(_) => (StatusCode::CONFLICT, "not_subscribed"),
        Error::ContentRejected { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "content_rejected"),
        Error::UnsupportedMediaType(_) => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        }
        Error::StorageUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        Error::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        Error::UpstreamError(_) => (StatusCode::BAD_GATEWAY, "upstream_error"),
        Error::BadGateway(_) => (StatusCode::BAD_GATEWAY, "bad_gateway"),
        Error::GatewayTimeout(_) => (StatusCode::GATEWAY_TIMEOUT, "gateway_timeout"),
        Error::UpstreamUnavailable { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable")
        }
        Error::Contention(_) => (StatusCode::SERVICE_UNAVAILABLE, "server_busy"),
        Error::QueryTimeout(_) => (StatusCode::SERVICE_UNAVAILABLE, "query_timeout"),
        Error::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = status_and_code(&self);
        let mut response = status.into_response();
        let headers = response.headers_mut();
        match &self {
            Error::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Error::RateLimited { retry_after, .. }
            | Error::UpstreamUnavailable { retry_after, .. } => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            Error::Contention(cause) => {
                tracing::warn!(error = %cause, "a write lost to concurrent writes after every retry");
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::StorageUnavailable(cause) => {
                tracing::warn!(error = %cause, "the file store is unavailable");
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Error::QueryTimeout(_) => {
                metrics::counter!("wxauth_query_timeouts_total").increment(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        let internal_cause = self.internal_chain();
        response.extensions_mut().insert(Arc::new(ErrorInfo {
            code,
            message: self.to_string(),
            internal_cause,
            rejected: match &self {
                Error::ContentRejected { field, label, .. } => Some((field.clone(), *label)),
                _ => None,
            },
        }));
        response
    }
}

/// The id of the current request, set by the request-id layer.
pub(crate) fn request_id(headers: &axum::http::HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Writes every error response as the contract's JSON body.
pub(crate) async fn envelope(request: Request, next: Next) -> Response {
    let request_id = request_id(request.headers());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response
            .extensions()
            .get::<crate::gateway::FromUpstream>()
            .is_some()
    {
        // Successes, and the gateway's services' own answers, as they are.
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let info = match parts.extensions.remove::<Arc<ErrorInfo>>() {
        Some(info) => (*info).clone(),
        None => {
            // The framework's own error (no route, wrong method, body too
            // large, timeout, panic): keep its status, give it our shape.
            let (code, message) = match status {
                StatusCode::NOT_FOUND => ("not_found", "no such route".to_owned()),
                StatusCode::METHOD_NOT_ALLOWED => (
                    "method_not_allowed",
                    "this route does not take that method".to_owned(),
                ),
                StatusCode::PAYLOAD_TOO_LARGE => (
                    "payload_too_large",
                    "the request body is larger than the limit".to_owned(),
                ),
                StatusCode::SERVICE_UNAVAILABLE => {
                    parts
                        .headers
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    (
                        "upstream_unavailable",
                        "the request took too long; try again shortly".to_owned(),
                    )
                }
                StatusCode::REQUEST_TIMEOUT => (
                    "request_timeout",
                    "the request was not received in time".to_owned(),
                ),
                s if s.is_server_error() => ("internal", "internal error".to_owned()),
                _ => (
                    "invalid_request",
                    status
                        .canonical_reason()
                        .unwrap_or("bad request")
                        .to_owned(),
                ),
            };
            drop(body);
            // The whole-request timeout is slowness, worth a warning; other
            // framework 5xx (a panic) are errors with a cause to log.
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::warn!("request timed out (http.request_timeout_ms)");
            }
            ErrorInfo {
                code,
                message,
                internal_cause: (status.is_server_error()
                    && status != StatusCode::SERVICE_UNAVAILABLE)
                    .then(|| format!("framework answered {status}")),
                rejected: None,
            }
        }
    };
    if let Some(cause) = &info.internal_cause {
        tracing::error!(%status, cause = %cause, "request failed inside the service");
    }
    let (field, label) = info.rejected.unzip();
    let body = ErrorBody {
        error: info.code.to_owned(),
        message: info.message,
        request_id,
        field,
        label,
    };
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, Body::from(bytes))
}
