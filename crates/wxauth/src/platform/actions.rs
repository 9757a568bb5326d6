//! What wxauth does with a push that passed its checks: once per event,
//! whichever instance and whichever of WeChat's copies it arrives as.
//! A user who withdrew their authorization (or closed their WeChat
//! account) loses their sessions, or their account when the app is so
//! configured, and the audit log says WeChat did it; consent and delivery
//! events update the subscribe-message records; an image check's verdict
//! settles its file; anything else goes to the developer's service.

use serde_json::json;
use wechat_miniapp::push_event::PushEvent;

use super::images::ImageChecks;
use super::push::{PushDesk, Received, event_name};
use super::subscriptions::Subscriptions;
use crate::admin::{Admin, AuditRecord};
use crate::auth::{Auth, FindBy};
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
    auth: &'a Auth,
}

impl<'a> PushActions<'a> {
    /// The rules of `desk`, acting through the operator's rules and the
    /// subscribe-message records.
    pub fn new(
        desk: &'a PushDesk,
        admin: Admin<'a>,
        subscriptions: Subscriptions<'a>,
        images: ImageChecks<'a>,
        auth: &'a Auth,
    ) -> Self {
        Self {
            desk,
            admin,
            subscriptions,
            images,
            auth,
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
            PushEvent::Other { .. } => self.forward(appid, push).await,
        };
        if acted.is_err() {
            self.desk.receipts.release(&push.digest).await;
        }
        acted.map(|()| Outcome::Done)
    }

    /// Sends an event wxauth does not act on to the app's
    /// `push_forward_url`: the message as JSON, the gateway's identity
    /// headers when its sender is a user here, and `X-Wxauth-Signature`
    /// (a JWT over the body's SHA-256, verifiable with the JWKS). A
    /// service that does not take it (no 2xx within 4 s) fails the push,
    /// so WeChat sends it again.
    async fn forward(&self, appid: &str, push: &Received) -> Result<()> {
        let Some(url) = self.desk.forward_url(appid) else {
            return Ok(());
        };
        let body = serde_json::Value::Object(push.message.clone()).to_string();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
        let signature = self.auth.tokens().sign_push_forward(appid, &sha)?;
        let field = |k: &str| push.message.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let openid = field("FromUserName");
        let event = match field("Event") {
            "" => field("MsgType"),
            e => e,
        };
        let mut request = self
            .desk
            .forwarder
            .post(url)
            .header("content-type", "application/json")
            .header("x-wxauth-appid", appid)
            .header("x-wxauth-event", event)
            .header("x-wxauth-signature", signature);
        if !openid.is_empty() {
            request = request.header("x-wxauth-openid", openid);
            let users = self
                .auth
                .find_users(Some(appid), &FindBy::Openid(openid.to_owned()))
                .await?;
            if let Some(me) = users.first() {
                request = request.header("x-wxauth-user-id", &me.user.id);
                if let Some(unionid) = &me.user.unionid {
                    request = request.header("x-wxauth-unionid", unionid);
                }
            }
        }
        let answered = request.body(body).send().await;
        match answered {
            Ok(r) if r.status().is_success() => {
                metrics::counter!("wxauth_push_forwarded_total", "result" => "taken").increment(1);
                Ok(())
            }
            other => {
                let why = match other {
                    Ok(r) => format!("the service answered {}", r.status()),
                    Err(e) if e.is_timeout() => "the service did not answer in 4 s".to_owned(),
                    Err(_) => "the service could not be reached".to_owned(),
                };
                metrics::counter!("wxauth_push_forwarded_total", "result" => "failed").increment(1);
                tracing::warn!(appid, event, reason = %why, "a pushed event could not be forwarded; WeChat will send it again");
                Err(crate::error::Error::BadGateway(format!(
                    "the event could not be forwarded: {why}"
                )))
            }
        }
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
