//! A typed async client for WeChat's mini-program server API, and its
//! cryptography.
//!
//! It speaks WeChat as WeChat actually behaves: JSON read whatever the
//! `Content-Type`, errors as HTTP 200 with an `errcode` (number or string),
//! success bodies without `errcode`, retries only where a retry cannot spend
//! a one-time code twice, and timeouts on every call. Secrets live in types
//! whose `Debug` and `Display` print nothing ([`secret`]).
//!
//! - [`WechatClient`]: `jscode2session`, access tokens, `checksession`,
//!   `resetusersessionkey`, `getuserphonenumber`.
//! - [`AccessTokenManager`]: caches tokens per app behind [`TokenCache`],
//!   refreshes ahead of expiry with one refresh at a time, and retries a
//!   business call once after a token error.
//! - [`crypto`]: decrypt `encryptedData` with watermark check; rawData and
//!   login-state signatures.

mod answer;
mod client;
pub mod clock;
pub mod crypto;
mod error;
pub mod push;
pub mod push_body;
pub mod push_event;
pub mod secret;
mod token;

/// How long a `wx.login` code (and a phone-button code) stays valid at
/// WeChat: five minutes (wx.login documentation).
pub const LOGIN_CODE_LIFETIME: std::time::Duration = std::time::Duration::from_secs(5 * 60);

pub use answer::parse_answer;
pub use client::{
    AccessTokenGrant, ClientConfig, Code2Session, PhoneInfo, ResetSessionKey, RetryPolicy,
    SubscribeMessage, Suggest, TextCheck, TextVerdict, WECHAT_API_BASE, Watermark, WechatClient,
    ensure_tls_provider,
};
pub use clock::{Clock, OffsetClock, SystemClock};
pub use crypto::DecryptError;
pub use error::{Error, Result};
pub use secret::{AccessToken, AppSecret, LoginCode, PhoneCode, SecretText, SessionKey};
pub use token::{
    AccessTokenManager, CachedToken, Lease, MemoryTokenCache, TokenCache, TokenFuture, TokenSource,
};
