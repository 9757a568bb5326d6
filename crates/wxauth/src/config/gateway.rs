//! `[[gateway]]`: path prefixes forwarded to the developer's own services.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, bad};

/// One `[[gateway]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The path prefix, e.g. `/api/` (requests under it are forwarded with
    /// their whole path).
    pub prefix: String,
    /// The service's base URL, e.g. `http://127.0.0.1:3000`.
    pub upstream: String,
    /// `required` (no valid token: 401) or `optional` (no token: forwarded
    /// without identity headers; an invalid token is still a 401).
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Time for the service's answer to begin, in milliseconds (then 504).
    #[serde(default = "default_gateway_timeout_ms")]
    pub timeout_ms: u64,
    /// Time to connect to the service, in milliseconds (then 502).
    #[serde(default = "default_gateway_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// Whether a gateway entry needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayAuth {
    /// No valid token: 401 (the default).
    #[default]
    Required,
    /// No token: forwarded without identity headers.
    Optional,
}
fn default_gateway_timeout_ms() -> u64 {
    10_000
}
fn default_gateway_connect_timeout_ms() -> u64 {
    2_000
}

/// A gateway entry, checked.
#[derive(Debug, Clone)]
pub struct GatewayRoute {
    /// Path prefix, starting and ending with `/`.
    pub prefix: String,
    /// Base URL without a trailing `/`.
    pub upstream: String,
    /// Whether a token is required.
    pub auth_required: bool,
    /// Until the answer begins.
    pub timeout: Duration,
    /// Until connected.
    pub connect_timeout: Duration,
}

/// Prefixes the service's own routes use: a gateway may not shadow them.
const RESERVED_PREFIXES: &[&str] = &[
    "/v1/",
    "/admin/",
    "/.well-known/",
    "/sim/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

/// Checks every gateway entry: a prefix shaped like `/api/` that neither
/// covers wxauth's own routes nor overlaps another entry, an upstream base
/// URL, and timeouts below `http.request_timeout_ms`.
pub(super) fn check_gateways(
    configured: &[GatewayConfig],
    request_timeout_ms: u64,
) -> Result<Vec<GatewayRoute>, ConfigError> {
    let mut gateways: Vec<GatewayRoute> = Vec::new();
    for (i, g) in configured.iter().enumerate() {
        let path = format!("gateway[{i}]");
        let p = g.prefix.trim();
        let shaped = p.len() > 2
            && p.starts_with('/')
            && p.ends_with('/')
            && !p.contains("//")
            && !p.split('/').any(|seg| seg == "." || seg == "..")
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !shaped {
            return Err(bad(format!(
                "{path}.prefix: {p:?}; use a path such as \"/api/\" (letters, digits, -_./, starting and ending with /)"
            )));
        }
        if RESERVED_PREFIXES
            .iter()
            .any(|r| p.starts_with(r) || r.starts_with(p))
        {
            return Err(bad(format!(
                "{path}.prefix: {p} would cover wxauth's own routes ({})",
                RESERVED_PREFIXES.join(" ")
            )));
        }
        if let Some(other) = gateways
            .iter()
            .find(|o| o.prefix.starts_with(p) || p.starts_with(&o.prefix))
        {
            return Err(bad(format!(
                "{path}.prefix: {p} overlaps the gateway prefix {}",
                other.prefix
            )));
        }
        let upstream = g.upstream.trim().trim_end_matches('/');
        let url_ok = (upstream.starts_with("http://") || upstream.starts_with("https://"))
            && upstream
                .split("://")
                .nth(1)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
        if !url_ok {
            return Err(bad(format!(
                "{path}.upstream: {upstream:?}; use the service's base URL, e.g. http://127.0.0.1:3000 (no path)"
            )));
        }
        if g.timeout_ms == 0 || g.connect_timeout_ms == 0 || g.timeout_ms >= request_timeout_ms {
            return Err(bad(format!(
                "{path}: timeout_ms and connect_timeout_ms must be positive, and timeout_ms below http.request_timeout_ms ({request_timeout_ms})"
            )));
        }
        gateways.push(GatewayRoute {
            prefix: p.to_owned(),
            upstream: upstream.to_owned(),
            auth_required: g.auth == GatewayAuth::Required,
            timeout: Duration::from_millis(g.timeout_ms),
            connect_timeout: Duration::from_millis(g.connect_timeout_ms),
        });
    }
    Ok(gateways)
}
