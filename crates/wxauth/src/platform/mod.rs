//! WeChat's platform services around the user (issue 32): message push
//! (WeChat calling this service, `push`) and what its events do
//! (`actions`), content security of texts (`content`) and pictures
//! (`images`), subscribe messages (`subscriptions`). Protocol facts:
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
