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
        let body_timeout = std::time::Duration::from_millis(state.settings().http.body_timeout_ms);
        let read = tokio::time::timeout(body_timeout, Bytes::from_request(req, state));
        let bytes = read
            .await
            .map_err(|_| {
                Error::RequestTimeout(format!(
                    "the request body did not arrive within {} ms (http.body_timeout_ms)",
                    body_timeout.as_millis()
                ))
            })?
            .map_err(|rejection| {
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

/// The token of an `Authorization: Bearer …` header: `None` when there is
/// no header, an error when there is one of another shape.
pub(crate) fn bearer_token(headers: &axum::http::HeaderMap) -> Result<Option<&str>, Error> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(Some)
        .ok_or(Error::Unauthorized(
            "the Authorization header must be \"Bearer <access_token>\"",
        ))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?.ok_or(Error::Unauthorized(
            "missing Authorization: Bearer <access_token>",
        ))?;
        let caller = state.auth().authenticate(token).await?;
        // A client may name its app; a token of another app is then refused.
        if let Some(appid) = parts
            .headers
            .get("x-wxauth-appid")
            .and_then(|v| v.to_str().ok())
            && appid != caller.appid
        {
            return Err(Error::Unauthorized(
                "this access token belongs to another app",
            ));
        }
        Ok(caller)
    }
}

/// The caller of a data route: authenticated as [`Caller`], then admitted
/// by the per-user limit on data requests.
pub struct DataCaller(pub Caller);

impl FromRequestParts<AppState> for DataCaller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        state.auth().admit_data_request(&caller).await?;
        Ok(DataCaller(caller))
    }
}

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy; then the right-most `X-Forwarded-For` entry that is not a trusted
/// proxy. Entries left of it were written by the client and are never
/// believed (a client rotating the left-most entry must not get a fresh
/// rate limit per request).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip().to_canonical());
        let trusted = &state.settings().trusted_proxies;
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, forwarded, trusted)))
    }
}

/// The client address behind `peer` (see [`ClientIp`]). `forwarded` are the
/// `X-Forwarded-For` header values in the order received.
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded: impl Iterator<Item = &'a str>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let entries: Vec<&str> = forwarded.flat_map(|v| v.split(',')).collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_entry(entry) else {
            // Garbage where an address should be: stop at the last hop we
            // could read (a trusted proxy, or the peer itself).
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:443`.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn the_right_most_untrusted_entry_is_the_client() {
        let trusted: Vec<ipnet::IpNet> = ["10.0.0.0/8", "127.0.0.1/32"]
            .iter()
            .filter_map(|t| t.parse().ok())
            .collect();
        let proxy = ip("127.0.0.1");
        let cases: &[(&[&str], &str)] = &[
            (&[], "127.0.0.1"),
            (&["203.0.113.7"], "203.0.113.7"),
            (&["1.1.1.1, 203.0.113.7"], "203.0.113.7"),
            (&["6.6.6.6, 203.0.113.7, 10.1.2.3"], "203.0.113.7"),
            (&["6.6.6.6", "203.0.113.7, 10.1.2.3"], "203.0.113.7"),
            (&["10.0.0.5, 10.1.2.3"], "10.0.0.5"),
            (&["garbage, 203.0.113.7"], "203.0.113.7"),
            (&["203.0.113.7, garbage"], "127.0.0.1"),
            (&["[2001:db8::1]:443"], "2001:db8::1"),
            (&["203.0.113.7:5555"], "203.0.113.7"),
        ];
        for (headers, want) in cases {
            assert_eq!(
                client_ip(proxy, headers.iter().copied(), &trusted),
                ip(want),
                "{headers:?}"
            );
        }
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_ip(ip("198.51.100.1"), ["1.2.3.4"].into_iter(), &trusted),
            ip("198.51.100.1")
        );
        // No trusted proxies: always the peer.
        assert_eq!(client_ip(proxy, ["1.2.3.4"].into_iter(), &[]), proxy);
    }
}
