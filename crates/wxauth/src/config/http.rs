//! `[http]`: serving details (timeouts, connection caps, trusted proxies).

use serde::Deserialize;

use super::{ConfigError, bad};

/// HTTP serving details.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The proxies (addresses or CIDRs, e.g. `"10.0.0.0/8"`) whose
    /// `X-Forwarded-For` is believed. The client address is the right-most
    /// entry that is not one of them (as nginx's `real_ip_recursive`);
    /// empty (the default): the socket peer, and the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Replaced by `trusted_proxies`; refused with a message saying so.
    #[serde(default)]
    pub trust_forwarded_for: Option<bool>,
    /// A request that takes longer is answered 503.
    pub request_timeout_ms: u64,
    /// A new connection, or a request whose first byte arrived, must have
    /// sent its whole header block within this time, or it is closed.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// Reading a request body may take this long; then 408 `request_timeout`.
    pub body_timeout_ms: u64,
    /// Open connections served; when reached, an idle connection is closed
    /// to admit a new one, and only when none is idle does a new one get
    /// 503 `server_busy` (keep it below the process's open-files limit).
    pub max_connections: usize,
    /// Open connections one client address (an IPv6 /64) may hold; past
    /// it a new one is closed at once. `trusted_proxies` are exempt.
    pub max_connections_per_address: usize,
    /// On SIGTERM, how long requests in progress may finish before every
    /// connection is closed.
    pub shutdown_grace_ms: u64,
    /// The request headers' total size (names and values), bytes; larger
    /// is 431 `header_too_large`.
    pub max_header_bytes: usize,
    /// The request target's length (path and query), bytes; longer is 414
    /// `uri_too_long`.
    pub max_uri_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            trust_forwarded_for: None,
            request_timeout_ms: 15_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_address: 256,
            shutdown_grace_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
        }
    }
}

impl HttpConfig {
    /// Checks the timeouts and caps; the trusted proxies, parsed.
    pub(super) fn check(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        if [
            self.request_timeout_ms,
            self.header_read_timeout_ms,
            self.idle_timeout_ms,
            self.body_timeout_ms,
            self.shutdown_grace_ms,
        ]
        .contains(&0)
            || self.max_connections == 0
            || self.max_connections_per_address == 0
        {
            return Err(bad(
                "http: timeouts, max_connections and max_connections_per_address must be positive",
            ));
        }
        if self.max_header_bytes < 1024 || self.max_uri_bytes < 256 {
            return Err(bad(
                "http: max_header_bytes must be at least 1024 and max_uri_bytes at least 256",
            ));
        }
        if self.trust_forwarded_for.is_some() {
            return Err(bad(
                "http.trust_forwarded_for was replaced: list your proxies instead, e.g. http.trusted_proxies = [\"10.0.0.0/8\"]",
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in self.trusted_proxies.iter().enumerate() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    bad(format!(
                        "http.trusted_proxies[{i}]: {text:?} is not an address or CIDR (e.g. 10.0.0.0/8)"
                    ))
                })?;
            trusted_proxies.push(net);
        }
        Ok(trusted_proxies)
    }
}
