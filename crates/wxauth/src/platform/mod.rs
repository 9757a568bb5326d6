//! WeChat's platform services around the user (issue 32): message push
//! (WeChat calling this service) and what its events do (revoked
//! authorization), with content security and subscribe messages to
//! follow. Protocol facts:
//! `docs/wechat-platform.md`.

pub mod actions;
pub mod content;
pub mod images;
pub mod push;
pub mod subscriptions;

/// What the platform room keeps for the running service: each app's push
/// settings and receipts, and the subscribe-message records.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Message push.
    pub pushes: push::PushDesk,
    /// Subscribe messages.
    pub subscriptions: subscriptions::SubscriptionBook,
}
