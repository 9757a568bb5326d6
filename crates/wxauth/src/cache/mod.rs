//! Short-lived shared state that must be fast to read: session revocations,
//! login-code de-duplication, rate-limit counters, WeChat's access token,
//! and notices of committed changes for realtime watches.
//! In-process for one instance; through Redis ([`SharedRedis`]) for
//! several, with the in-process versions as the fallback while Redis is
//! down.

pub mod change_notices;
mod login_codes;
mod push_receipts;
pub mod redis;
mod revocations;
mod shared_codes;
pub mod shared_limits;
mod wechat_tokens;

pub use login_codes::{LoginCodes, LoginIdentity};
pub use push_receipts::PushReceipts;
pub use redis::SharedRedis;
pub use revocations::{MemoryRevocations, Revocations, SharedRevocations};
pub use shared_codes::{Claim, SharedCodes};
pub use wechat_tokens::RedisTokenCache;

/// Wall-clock Unix milliseconds, for what Redis and other instances share
/// (the service's own clock can be moved by tests; shared expiry cannot).
pub(crate) fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
