//! Extractors: JSON bodies with the contract's error shape, the bearer
//! caller, and the client IP.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::auth::Caller;
use crate::error::Error;

/// A JSON body. Malformed JSON, wrong types, unknown fields and nesting
/// past `limits.json_depth` become a 400 `invalid_request` naming the
/// field's path (never echoing its value); an oversized body a 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        if !content_type.starts_with("application/json") && !content_type.contains("+json") {
            return Err(Error::InvalidRequest(format!(
                "the body must be JSON (Content-Type: application/json), not {content_type}"
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge("the request body is larger than the limit".into())
            } else {
                Error::InvalidRequest(format!(
                    "could not read the body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.is_empty() {
            return Err(Error::InvalidRequest(
                "the body is empty; send a JSON object".into(),
            ));
        }
        super::json_body::parse(&bytes, state.settings().limits.json_depth).map(ApiJson)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(Error::Unauthorized(
                "missing Authorization: Bearer <access_token>",
            ))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Error::Unauthorized(
                "the Authorization header must be \"Bearer <access_token>\"",
            ))?;
        let caller = state.auth().authenticate(token).await?;
        // A client may name its app; a token of another app is then refused.
        if let Some(appid) = parts
            .headers
            .get("x-wxauth-appid")
            .and_then(|v| v.to_str().ok())
        {
            if appid != caller.appid {
                return Err(Error::Unauthorized(
                    "this access token belongs to another app",
                ));
            }
        }
        Ok(caller)
    }
}

/// The client's address: the socket peer, or the first `X-Forwarded-For`
/// entry when the configuration trusts the proxy in front.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if state.settings().http.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.trim().parse().ok());
            if let Some(ip) = forwarded {
                return Ok(ClientIp(ip));
            }
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        Ok(ClientIp(peer))
    }
}
