//! The identity gateway: requests under a configured prefix go to the
//! developer's own service with the caller's identity in headers that only
//! wxauth can set. The service changes one line: `req.body.openid` becomes
//! `req.get('x-wxauth-openid')`.
//!
//! What is forwarded: method, whole path (only one that stays under the
//! prefix: [`path`]), query, headers other than hop-by-hop and reserved
//! ones (`Authorization`, `X-Request-Id`, `Forwarded`, `X-Real-Ip`,
//! `X-Forwarded-*`, `X-Wxauth-*`, compared with `_` read as `-`); the
//! body, streamed (within `limits.body_bytes`). What is added:
//! `X-Wxauth-User-Id`, `-Appid`, `-Openid`, `-Unionid` (when known),
//! `-Session-Id`, the request's `X-Request-Id` and `X-Forwarded-For`,
//! `-Proto` and `-Host` as wxauth knows them. The
//! answer comes back as the service gave it, streamed. A service that
//! refuses the connection or breaks it is a 502 `bad_gateway`; one that does
//! not begin answering within the entry's `timeout_ms` a 504
//! `gateway_timeout`.

use std::net::IpAddr;
use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use futures_util::TryStreamExt;

use crate::config::GatewayRoute;
use crate::error::{Error, Result};

pub mod path;

/// Who the caller is, as the gateway tells the service.
#[derive(Debug, Clone)]
pub struct Identity {
    /// wxauth's user id.
    pub user_id: String,
    /// The app.
    pub appid: String,
    /// The user's openid in the app.
    pub openid: String,
    /// The unionid, when WeChat gave one.
    pub unionid: Option<String>,
    /// The session.
    pub session_id: String,
}

/// Marks a response as the service's own, so the error envelope leaves a
/// 4xx/5xx from the service as the service wrote it.
#[derive(Debug, Clone, Copy)]
pub struct FromUpstream;

/// Hop-by-hop headers (RFC 9110 §7.6.1), which never cross a proxy.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Headers only wxauth may set on a forwarded request: who the caller is,
/// where the request came from, and its id.
const RESERVED: &[&str] = &["authorization", "x-request-id", "forwarded", "x-real-ip"];

/// A header name as the service may read it: CGI, WSGI, Rack and PHP turn
/// `X-Wxauth-User-Id` and `X_Wxauth_User_Id` into the same variable, so
/// names are compared in lower case with `_` read as `-`.
fn normalised(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b == b'_' {
                '-'
            } else {
                char::from(b.to_ascii_lowercase())
            }
        })
        .collect()
}

/// Whether a client's header `name` is dropped before forwarding: hop-by-hop
/// ones, the reserved ones and every `x-wxauth-*` / `x-forwarded-*`, by
/// their normalised name.
pub fn dropped_request_header(name: &str) -> bool {
    let name = normalised(name);
    HOP_BY_HOP.contains(&name.as_str())
        || RESERVED.contains(&name.as_str())
        || name.starts_with("x-wxauth-")
        || name.starts_with("x-forwarded-")
}

/// Whether the service's response header `name` is left out of the answer
/// (hop-by-hop ones; the body's length is kept).
fn dropped_response_header(name: &str) -> bool {
    name != "content-length" && HOP_BY_HOP.contains(&name)
}

/// The names a `Connection` header lists: hop-by-hop for this request only.
fn connection_options(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| normalised(t.trim()))
        .filter(|t| !t.is_empty())
        .collect()
}

/// What wxauth tells the service about where the request came from, from
/// what it knows itself: the client address (the socket peer, or behind a
/// trusted proxy the address it reported), the scheme the client used and
/// the host it asked for.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `X-Forwarded-For`.
    pub client_ip: IpAddr,
    /// `X-Forwarded-Proto`: `http` or `https`.
    pub proto: &'static str,
    /// `X-Forwarded-Host`, when known.
    pub host: Option<String>,
}

/// One configured gateway entry with its HTTP client.
#[derive(Debug)]
pub struct Gateway {
    route: GatewayRoute,
    client: reqwest::Client,
}

impl Gateway {
    /// A gateway for `route`.
    pub fn new(route: GatewayRoute) -> Result<Self> {
        wechat_miniapp::ensure_tls_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(route.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal_from(format!("gateway {}", route.prefix), e))?;
        Ok(Self { route, client })
    }

    /// The entry.
    pub fn route(&self) -> &GatewayRoute {
        &self.route
    }

    /// Forwards `request` with `identity` (None: anonymous, for optional
    /// entries) and returns the service's answer, streamed.
    pub async fn forward(
        &self,
        request: Request<Body>,
        identity: Option<&Identity>,
        request_id: &str,
        origin: &Origin,
        body_limit: usize,
    ) -> Result<Response<Body>> {
        let (parts, body) = request.into_parts();
        if let Some(len) = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > body_limit as u64
        {
            return Err(Error::PayloadTooLarge(format!(
                "the request body is {len} bytes; the limit is {body_limit} (limits.body_bytes)"
            )));
        }
        let url = path::forwarded_url(
            &self.route.upstream,
            &self.route.prefix,
            parts.uri.path(),
            parts.uri.query(),
        )
        .map_err(|refusal| {
            metrics::counter!("wxauth_gateway_refused_paths_total", "prefix" => self.route.prefix.clone())
                .increment(1);
            Error::InvalidRequest(format!("{refusal}; it is not forwarded"))
        })?;
        let listed = connection_options(&parts.headers);
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !dropped_request_header(name.as_str())
                && !listed.iter().any(|l| *l == normalised(name.as_str()))
            {
                headers.append(name.clone(), value.clone());
            }
        }
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(HeaderName::from_static(name), v);
            }
        };
        set("x-request-id", request_id);
        set("x-forwarded-for", &origin.client_ip.to_string());
        set("x-forwarded-proto", origin.proto);
        if let Some(host) = &origin.host {
            set("x-forwarded-host", host);
        }
        if let Some(id) = identity {
            set("x-wxauth-user-id", &id.user_id);
            set("x-wxauth-appid", &id.appid);
            set("x-wxauth-openid", &id.openid);
            if let Some(u) = &id.unionid {
                set("x-wxauth-unionid", u);
            }
            set("x-wxauth-session-id", &id.session_id);
        }
        // The body streams through, cut off past the limit. A request with
        // no body (most GETs) is sent without one, not as an empty chunked
        // stream.
        let empty = http_body::Body::size_hint(&body).exact() == Some(0);
        let started = Instant::now();
        let mut upstream = self
            .client
            .request(parts.method.clone(), url)
            .headers(headers);
        if !empty {
            let limited = http_body_util::Limited::new(body, body_limit);
            let stream = http_body_util::BodyDataStream::new(limited);
            upstream = upstream.body(reqwest::Body::wrap_stream(stream));
        }
        let sent = upstream.send();
        let prefix = self.route.prefix.clone();
        let answer = match tokio::time::timeout(self.route.timeout, sent).await {
            Err(_) => {
                metrics::counter!("wxauth_gateway_failures_total", "prefix" => prefix, "kind" => "timeout").increment(1);
                return Err(Error::GatewayTimeout(format!(
                    "the service behind {} did not answer within {} ms",
                    self.route.prefix,
                    self.route.timeout.as_millis()
                )));
            }
            Ok(Err(e)) => {
                let too_large = std::error::Error::source(&e)
                    .map(|s| s.to_string().contains("length limit"))
                    .unwrap_or(false)
                    || format!("{e:?}").contains("LengthLimitError");
                if too_large {
                    return Err(Error::PayloadTooLarge(format!(
                        "the request body is larger than the limit of {body_limit} bytes (limits.body_bytes)"
                    )));
                }
                metrics::counter!("wxauth_gateway_failures_total", "prefix" => prefix, "kind" => "unreachable").increment(1);
                tracing::warn!(prefix = %self.route.prefix, error = %e, "gateway: the service is unreachable");
                return Err(Error::BadGateway(format!(
                    "the service behind {} could not be reached",
                    self.route.prefix
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        metrics::histogram!("wxauth_gateway_upstream_seconds", "prefix" => prefix.clone())
            .record(started.elapsed().as_secs_f64());
        let mut response = Response::builder().status(answer.status());
        if let Some(h) = response.headers_mut() {
            for (name, value) in answer.headers() {
                if !dropped_response_header(name.as_str()) {
                    h.append(name.clone(), value.clone());
                }
            }
        }
        let body = Body::from_stream(answer.bytes_stream().map_err(std::io::Error::other));
        let mut response = response
            .body(body)
            .map_err(|e| Error::internal_from("gateway response", e))?;
        response.extensions_mut().insert(FromUpstream);
        Ok(response)
    }
}
