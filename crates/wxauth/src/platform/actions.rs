//! What wxauth does with a push that passed its checks: once per event,
//! whichever instance and whichever of WeChat's copies it arrives as.
//! A user who withdrew their authorization (or closed their WeChat
//! account) loses their sessions, or their account when the app is so
//! configured, and the audit log says WeChat did it.

use serde_json::json;
use wechat_miniapp::push_event::PushEvent;

use super::images::ImageChecks;
use super::push::{PushDesk, Received, event_name};
use super::subscriptions::Subscriptions;
use crate::admin::{Admin, AuditRecord};
use crate::auth::FindBy;
use crate::config::OnRevoke;
use crate::error::Result;
use crate::vocab::{Actor, Target};

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acted on (or nothing to do for this event).
    Done,
    /// A copy of a push already taken: nothing done.
    Repeat,
}

/// The rules over pushed events, borrowed for one push.
#[derive(Debug, Clone, Copy)]
pub struct PushActions<'a> {
    desk: &'a PushDesk,
    admin: Admin<'a>,
    subscriptions: Subscriptions<'a>,
    images: ImageChecks<'a>,
}

impl<'a> PushActions<'a> {
    /// The rules of `desk`, acting through the operator's rules and the
    /// subscribe-message records.
    pub fn new(
        desk: &'a PushDesk,
        admin: Admin<'a>,
        subscriptions: Subscriptions<'a>,
        images: ImageChecks<'a>,
    ) -> Self {
        Self {
            desk,
            admin,
            subscriptions,
            images,
        }
    }

    /// Acts on `push` for `appid` unless a copy was taken already. When
    /// acting fails the receipt is given back, so WeChat's next copy (it
    /// sends again on an error) is acted on.
    pub async fn act(&self, appid: &str, push: &Received) -> Result<Outcome> {
        if !self.desk.receipts.take(&push.digest).await {
            metrics::counter!("wxauth_push_repeats_total").increment(1);
            tracing::debug!(
                appid,
                event = event_name(&push.event),
                "a repeated push was acknowledged"
            );
            return Ok(Outcome::Repeat);
        }
        let acted = match &push.event {
            PushEvent::AuthorizationRevoked {
                openid,
                revoke_info,
                account_closed,
            } => {
                self.revoked(appid, openid, revoke_info, *account_closed)
                    .await
            }
            PushEvent::SubscribePopup { openid, items } => {
                self.subscriptions
                    .pushed_consent(appid, openid, items, false)
                    .await
            }
            PushEvent::SubscribeChange { openid, items } => {
                self.subscriptions
                    .pushed_consent(appid, openid, items, true)
                    .await
            }
            PushEvent::SubscribeSent { items, .. } => {
                self.subscriptions.pushed_delivery(items).await
            }
            PushEvent::MediaCheck {
                trace_id,
                suggest,
                label,
            } => self.images.verdict(appid, trace_id, suggest, *label).await,
            _ => Ok(()),
        };
        if acted.is_err() {
            self.desk.receipts.release(&push.digest).await;
        }
        acted.map(|()| Outcome::Done)
    }

    async fn revoked(
        &self,
        appid: &str,
        openid: &str,
        revoke_info: &str,
        account_closed: bool,
    ) -> Result<()> {
        let action = if account_closed {
            "push user_authorization_cancellation"
        } else {
            "push user_authorization_revoke"
        };
        let users = self
            .admin
            .find_users(Some(appid), &FindBy::Openid(openid.to_owned()))
            .await?;
        if users.is_empty() {
            // Never logged in here (or already deleted): nothing is held.
            tracing::info!(
                appid,
                action,
                "a revoked authorization names no user of this app"
            );
        }
        for user in users {
            let actor = Actor::WeChat(appid.to_owned());
            match self.desk.on_revoke(appid) {
                OnRevoke::EndSessions => {
                    let ended = self.admin.revoke_user(&user.id).await?;
                    let record = AuditRecord::new(actor, action, Some(Target::User(user.id)))
                        .detail(json!({ "sessions_ended": ended, "revoke_info": revoke_info }));
                    self.admin.record(record).await?;
                }
                OnRevoke::Delete => self.admin.delete_user(actor, action, &user.id).await?,
            }
        }
        Ok(())
    }
}
