//! `[limits]`: sizes, quotas and rate limits.

use serde::Deserialize;

use super::{ConfigError, bad};

/// The deepest `limits.json_depth` allowed: below serde_json's own
/// recursion limit (128), with room for the wrappers a stored document is
/// answered in, so a body we accepted can always be parsed again.
pub const MAX_JSON_DEPTH: usize = 100;

/// Size and rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, bytes.
    pub body_bytes: usize,
    /// Largest profile (as JSON), bytes.
    pub profile_bytes: usize,
    /// Documents one user may keep in one collection.
    pub documents_per_collection: u32,
    /// Collections (holding at least one document) one user may have.
    pub collections_per_user: u32,
    /// Bytes one user's documents may take across all collections: each
    /// document's JSON plus 512 bytes for its row and index entries (so a
    /// flood of tiny documents is bounded too).
    pub bytes_per_user: u64,
    /// The largest page of a document list.
    pub page_size_max: u32,
    /// Logins allowed per client IP per minute.
    pub login_per_ip_per_minute: u32,
    /// Logins allowed per app per second.
    pub login_per_app_per_second: u32,
    /// How deep arrays and objects may nest in any JSON body (documents
    /// included), at most 100.
    pub json_depth: usize,
    /// Login codes WeChat may refuse per client address per minute; past
    /// that the address is refused before it costs the app anything.
    pub login_failures_per_ip_per_minute: u32,
    /// The longest a query (`where`, `order_by`, `_count`) may take,
    /// waiting for its turn included: then it is stopped and answered 503
    /// `query_timeout`. At most 4 such queries run at once per process.
    pub query_timeout_ms: u64,
    /// Data requests (`/v1/data/…`) per user per minute, a burst of as many
    /// allowed; past it 429 `rate_limited`. Counted across instances in
    /// Redis when `redis_url` is set.
    pub data_requests_per_user_per_minute: u32,
    /// Exports (`GET /v1/me/export`, the admin and CLI exports) streaming
    /// at once per process; more are answered 429. Each holds a database
    /// connection for its snapshot while it streams.
    pub exports_at_once: u32,
    /// Code exchanges one client address may have in flight at once.
    pub login_in_flight_per_ip: u32,
    /// How long a login code already exchanged is answered like the first
    /// time (a client's retry after a lost answer), seconds; 0 turns
    /// replays off. Kept short: anyone who saw a used code (a log, a proxy)
    /// could otherwise open sessions with it for the code's whole 5 minutes.
    /// An instance keeps at most 262,144 codes (about 15 MB): above about
    /// 8,700 logins/s its oldest go early, as if the window were shorter.
    pub login_code_replay_secs: u64,
    /// Wrong or missing service keys (introspection, the admin API) allowed
    /// per client address per minute; past that the address gets 429.
    pub service_key_failures_per_ip_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            profile_bytes: 4 * 1024,
            documents_per_collection: 10_000,
            collections_per_user: 100,
            bytes_per_user: 10 * 1024 * 1024,
            page_size_max: 100,
            login_per_ip_per_minute: 60,
            login_per_app_per_second: 500,
            json_depth: 32,
            login_failures_per_ip_per_minute: 10,
            exports_at_once: 2,
            query_timeout_ms: 5_000,
            data_requests_per_user_per_minute: 1_200,
            login_in_flight_per_ip: 8,
            login_code_replay_secs: 30,
            service_key_failures_per_ip_per_minute: 10,
        }
    }
}

impl LimitsConfig {
    /// Checks that every limit is positive and within its bounds.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.body_bytes < 1024 || self.profile_bytes == 0 {
            return Err(bad(
                "limits: body_bytes must be at least 1024 and profile_bytes positive",
            ));
        }
        if self.documents_per_collection == 0
            || self.page_size_max == 0
            || self.collections_per_user == 0
            || self.bytes_per_user == 0
        {
            return Err(bad(
                "limits: documents_per_collection, collections_per_user, bytes_per_user and page_size_max must be positive",
            ));
        }
        if self.json_depth == 0 || self.json_depth > MAX_JSON_DEPTH {
            return Err(bad(format!(
                "limits.json_depth: must be from 1 to {MAX_JSON_DEPTH}"
            )));
        }
        if self.login_per_ip_per_minute == 0
            || self.login_per_app_per_second == 0
            || self.login_failures_per_ip_per_minute == 0
            || self.login_in_flight_per_ip == 0
            || self.service_key_failures_per_ip_per_minute == 0
        {
            return Err(bad("limits: login rate limits must be positive"));
        }
        if self.query_timeout_ms == 0
            || self.data_requests_per_user_per_minute == 0
            || self.exports_at_once == 0
        {
            return Err(bad(
                "limits: query_timeout_ms, data_requests_per_user_per_minute and exports_at_once must be positive",
            ));
        }
        if self.login_code_replay_secs > 300 {
            return Err(bad(
                "limits.login_code_replay_secs: at most 300 (a login code lives 5 minutes)",
            ));
        }
        Ok(())
    }
}
