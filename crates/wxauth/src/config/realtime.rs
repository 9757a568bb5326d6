//! `[realtime]`: watches of a query over a WebSocket (`GET /v1/watch`),
//! and the bounds that keep them from growing without limit.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, bad};

/// Realtime watches.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeConfig {
    /// Whether watches are served and document writes logged for them.
    /// Off, `GET /v1/watch` is 404 and writes cost what they did before
    /// realtime (no change log); set it the same on every instance.
    pub enabled: bool,
    /// Watches one socket may hold at once.
    pub watches_per_socket: u32,
    /// Sockets one user may hold open at once (on this instance).
    pub sockets_per_user: u32,
    /// Sockets one client address may hold open at once (on this instance).
    pub sockets_per_address: u32,
    /// The most documents a watch's `limit` may ask for (its `init` holds
    /// at most this many; a query matching more keeps the first `limit`
    /// in its order, as `GET /v1/data` would).
    pub max_limit: u32,
    /// The most bytes of document data one `init` (or refill) may carry;
    /// a watch whose first answer would be larger is refused
    /// (`limit_exceeded`: ask for a smaller `limit`).
    pub max_init_bytes: u64,
    /// Messages waiting to be sent to one socket before it is closed as a
    /// slow reader (close code 4408).
    pub send_buffer: u32,
    /// How often an idle socket is pinged, seconds; one that answers
    /// nothing for two intervals is closed.
    pub ping_secs: u64,
    /// How long changes are kept for watchers that reconnect
    /// (`resume_after`), seconds; older ones get a fresh `init`.
    pub history_secs: u64,
    /// How often each instance looks for changes committed elsewhere
    /// whose notice it missed, milliseconds (notices normally arrive at
    /// once: in process, or through Redis).
    pub poll_ms: u64,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            watches_per_socket: 20,
            sockets_per_user: 10,
            sockets_per_address: 200,
            max_limit: 1000,
            max_init_bytes: 4 * 1024 * 1024,
            send_buffer: 256,
            ping_secs: 30,
            history_secs: 24 * 3600,
            poll_ms: 1000,
        }
    }
}

/// `[realtime]`, checked.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// Watches served, writes logged.
    pub enabled: bool,
    /// Watches per socket.
    pub watches_per_socket: usize,
    /// Sockets per user.
    pub sockets_per_user: usize,
    /// Sockets per address.
    pub sockets_per_address: usize,
    /// Largest `limit`.
    pub max_limit: u32,
    /// Largest `init`, bytes of document data.
    pub max_init_bytes: usize,
    /// Messages queued per socket.
    pub send_buffer: usize,
    /// Ping interval.
    pub ping: Duration,
    /// Change history kept.
    pub history: Duration,
    /// Poll interval.
    pub poll: Duration,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeConfig::default()
            .check()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }
}

impl RealtimeConfig {
    pub(super) fn check(&self) -> Result<RealtimeSettings, ConfigError> {
        let positive = |key: &str, v: u64| {
            if v == 0 {
                Err(bad(format!("realtime.{key} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("watches_per_socket", u64::from(self.watches_per_socket))?;
        positive("sockets_per_user", u64::from(self.sockets_per_user))?;
        positive("sockets_per_address", u64::from(self.sockets_per_address))?;
        positive("send_buffer", u64::from(self.send_buffer))?;
        positive("max_init_bytes", self.max_init_bytes)?;
        positive("ping_secs", self.ping_secs)?;
        positive("history_secs", self.history_secs)?;
        if !(1..=10_000).contains(&self.max_limit) {
            return Err(bad("realtime.max_limit must be from 1 to 10000"));
        }
        if !(50..=60_000).contains(&self.poll_ms) {
            return Err(bad("realtime.poll_ms must be from 50 to 60000"));
        }
        Ok(RealtimeSettings {
            enabled: self.enabled,
            watches_per_socket: self.watches_per_socket as usize,
            sockets_per_user: self.sockets_per_user as usize,
            sockets_per_address: self.sockets_per_address as usize,
            max_limit: self.max_limit,
            max_init_bytes: usize::try_from(self.max_init_bytes).unwrap_or(usize::MAX),
            send_buffer: self.send_buffer as usize,
            ping: Duration::from_secs(self.ping_secs),
            history: Duration::from_secs(self.history_secs),
            poll: Duration::from_millis(self.poll_ms),
        })
    }
}
