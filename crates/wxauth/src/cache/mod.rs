//! Short-lived shared state that must be fast to read: session revocations,
//! login-code de-duplication, rate-limit counters and WeChat's access token.
//! In-process for one instance; through Redis ([`SharedRedis`]) for
//! several, with the in-process versions as the fallback while Redis is
//! down.

mod login_codes;
pub mod redis;
mod revocations;
mod shared_codes;
pub mod shared_limits;
mod wechat_tokens;

pub use login_codes::{LoginCodes, LoginIdentity};
pub use redis::SharedRedis;
pub use revocations::{MemoryRevocations, Revocations, SharedRevocations};
pub use shared_codes::{Claim, SharedCodes};
pub use wechat_tokens::RedisTokenCache;
