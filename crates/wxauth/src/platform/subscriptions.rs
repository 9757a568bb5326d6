//! Subscribe messages (订阅消息): the operator sends a template message to
//! a user who consented; consent is known from WeChat's pushed popup and
//! settings events and from what the mini program reports of
//! `wx.requestSubscribeMessage`; each send and its pushed delivery result
//! is recorded. A send the server knows has no consent left is refused
//! (409 `not_subscribed`) without calling WeChat.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wechat_miniapp::push_event::{TemplateConsent, TemplateDelivery};

use crate::auth::{Auth, Caller, FindBy, MessageToSend};
use crate::error::{Error, Result};
use crate::store::{ConsentAnswer, ConsentChange, Reservation, SendRecord, Store};
use crate::vocab::time::rfc3339;

/// The mini program's report and WeChat's push of one popup answer
/// arrive within this long of each other; an accept heard from both
/// counts once. (UNCONFIRMED how far apart they can be: a minute is far
/// longer than either takes.)
pub const SAME_ANSWER_MS: i64 = 60_000;

/// Sends shown with a user's subscriptions.
const SENDS_SHOWN: i64 = 50;

/// Template fields one message may carry.
const MAX_FIELDS: usize = 32;

/// A subscribe message to send (`POST /admin/v1/users/{id}/messages`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// The template (from the mini program's console).
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_-]{1,128}$")]
    pub template_id: String,
    /// The page the message opens, with its query (`pages/order/index?id=7`).
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub page: Option<String>,
    /// The template's fields: `{"thing1": {"value": "…"}, …}`.
    #[schema(value_type = Object)]
    pub data: Value,
    /// `developer`, `trial` or `formal` (WeChat's default).
    #[serde(default)]
    pub miniprogram_state: Option<String>,
    /// `zh_CN` (WeChat's default), `en_US`, `zh_HK` or `zh_TW`.
    #[serde(default)]
    pub lang: Option<String>,
}

/// A message WeChat accepted for delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MessageSent {
    /// wxauth's id of the send.
    pub id: String,
    /// The template.
    pub template_id: String,
    /// WeChat's message id (as text: it is past JavaScript's exact range).
    pub msgid: String,
    /// When (RFC 3339).
    pub sent_at: String,
}

/// A user's consent to one template.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    /// The template.
    pub template_id: String,
    /// `accept`, `reject`, `ban` or `filter`.
    pub status: String,
    /// Sends the user's accepts still allow (one per accept).
    pub remaining: i64,
    /// `wechat` (pushed by WeChat) or `client` (reported by the mini program).
    pub source: String,
    /// The last accept (RFC 3339).
    pub accepted_at: Option<String>,
    /// The last change (RFC 3339).
    pub updated_at: String,
}

/// One send and what became of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SendView {
    /// wxauth's id of the send.
    pub id: String,
    /// The template.
    pub template_id: String,
    /// When (RFC 3339).
    pub sent_at: String,
    /// WeChat's errcode (0: accepted; 43101: no consent).
    pub errcode: i64,
    /// WeChat's message id.
    pub msgid: Option<String>,
    /// The pushed delivery result (`success`, or why not), once known.
    pub delivery: Option<String>,
    /// Its code (0: delivered).
    pub delivery_code: Option<i64>,
    /// When it was pushed (RFC 3339).
    pub delivered_at: Option<String>,
}

/// A user's consents and latest sends.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionsView {
    /// Per template.
    pub subscriptions: Vec<ConsentView>,
    /// The latest 50, newest first.
    pub sends: Vec<SendView>,
}

/// The subscribe-message records, over the store.
#[derive(Debug, Clone)]
pub struct SubscriptionBook {
    store: Store,
}

impl SubscriptionBook {
    /// The records in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// The rules, borrowed for a request.
#[derive(Debug, Clone, Copy)]
pub struct Subscriptions<'a> {
    book: &'a SubscriptionBook,
    auth: &'a Auth,
}

impl<'a> Subscriptions<'a> {
    /// The rules over `book`, asking WeChat through `auth`.
    pub fn new(book: &'a SubscriptionBook, auth: &'a Auth) -> Self {
        Self { book, auth }
    }

    fn store(&self) -> &Store {
        &self.book.store
    }

    /// Sends `request` to `user_id`: refused without calling WeChat when
    /// the user's known consent allows no send; else one send is taken,
    /// WeChat asked, and its answer recorded.
    pub async fn send(&self, user_id: &str, request: &MessageRequest) -> Result<MessageSent> {
        check_request(request)?;
        self.auth.account(user_id).await?;
        let now = self.auth.now();
        let template = &request.template_id;
        let reservation = self.store().reserve_send(user_id, template, now).await?;
        let record = |errcode: i64, msgid: Option<String>| SendRecord {
            id: uuid::Uuid::now_v7().to_string(),
            template_id: template.clone(),
            sent_at: now,
            errcode,
            msgid,
            delivery: None,
            delivery_code: None,
            delivered_at: None,
        };
        if reservation == Reservation::KnownNone {
            self.store()
                .settle_send(user_id, record(43101, None), false, false)
                .await?;
            metrics::counter!("wxauth_messages_total", "result" => "not_subscribed").increment(1);
            return Err(Error::NotSubscribed(format!(
                "the user has no consent left for template {template}: each accept in \
                 wx.requestSubscribeMessage allows one message; ask again"
            )));
        }
        let taken = reservation == Reservation::Taken;
        let message = MessageToSend {
            template_id: template,
            page: request.page.as_deref(),
            data: &request.data,
            miniprogram_state: request.miniprogram_state.as_deref(),
            lang: request.lang.as_deref(),
        };
        match self.auth.send_subscribe_message(user_id, message).await {
            Ok(msgid) => {
                let sent = record(0, Some(msgid.clone()));
                let view = MessageSent {
                    id: sent.id.clone(),
                    template_id: template.clone(),
                    msgid,
                    sent_at: rfc3339(now),
                };
                self.store()
                    .settle_send(user_id, sent, false, false)
                    .await?;
                metrics::counter!("wxauth_messages_total", "result" => "sent").increment(1);
                Ok(view)
            }
            Err(Error::NotSubscribed(why)) => {
                self.store()
                    .settle_send(user_id, record(43101, None), false, true)
                    .await?;
                metrics::counter!("wxauth_messages_total", "result" => "not_subscribed")
                    .increment(1);
                Err(Error::NotSubscribed(why))
            }
            Err(e) => {
                // Not sent: the consent taken is the user's again.
                if taken {
                    self.store().give_back_send(user_id, template).await?;
                }
                metrics::counter!("wxauth_messages_total", "result" => "failed").increment(1);
                Err(e)
            }
        }
    }

    /// Records what the mini program reports `wx.requestSubscribeMessage`
    /// answered the caller (`{"TEMPLATE_ID": "accept", …, "errMsg": …}`);
    /// how many answers were recorded (none: nothing to do).
    pub async fn client_reported(
        &self,
        caller: &Caller,
        result: &Map<String, Value>,
    ) -> Result<usize> {
        let mut answers = Vec::new();
        for (template_id, status) in result {
            if template_id == "errMsg" {
                if !status.is_string() {
                    return Err(Error::InvalidRequest(
                        "errMsg must be text (what wx.requestSubscribeMessage answers)".into(),
                    ));
                }
                continue;
            }
            check_template(template_id)?;
            let status = status
                .as_str()
                .filter(|s| ["accept", "reject", "ban", "filter"].contains(s));
            let Some(status) = status else {
                return Err(Error::InvalidRequest(format!(
                    "{template_id}: expected accept, reject, ban or filter (what wx.requestSubscribeMessage answers)"
                )));
            };
            answers.push(ConsentAnswer {
                template_id: template_id.clone(),
                status: status.to_owned(),
            });
        }
        if answers.len() > 20 {
            return Err(Error::InvalidRequest(
                "at most 20 templates' answers, as wx.requestSubscribeMessage returned them".into(),
            ));
        }
        let recorded = answers.len();
        if recorded == 0 {
            return Ok(0);
        }
        self.record(&caller.user_id, answers, "client", false)
            .await?;
        Ok(recorded)
    }

    /// WeChat's pushed popup or settings event for `openid` of `appid`.
    pub async fn pushed_consent(
        &self,
        appid: &str,
        openid: &str,
        items: &[TemplateConsent],
        settings: bool,
    ) -> Result<()> {
        let answers: Vec<ConsentAnswer> = items
            .iter()
            .filter(|i| check_template(&i.template_id).is_ok())
            .map(|i| ConsentAnswer {
                template_id: i.template_id.clone(),
                status: match i.status.as_str() {
                    "accept" => "accept".to_owned(),
                    // WeChat's other words (reject, or a new one) allow no send.
                    _ => "reject".to_owned(),
                },
            })
            .collect();
        for user in self
            .auth
            .find_users(Some(appid), &FindBy::Openid(openid.to_owned()))
            .await?
        {
            self.record(&user.user.id, answers.clone(), "wechat", settings)
                .await?;
        }
        Ok(())
    }

    /// WeChat's pushed delivery results.
    pub async fn pushed_delivery(&self, items: &[TemplateDelivery]) -> Result<()> {
        let now = self.auth.now();
        for item in items {
            let found = self
                .store()
                .record_delivery(&item.msg_id, &item.error_status, item.error_code, now)
                .await?;
            if !found {
                tracing::debug!("a delivery result names no message sent through wxauth");
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        user_id: &str,
        answers: Vec<ConsentAnswer>,
        source: &'static str,
        settings: bool,
    ) -> Result<()> {
        self.store()
            .record_consents(ConsentChange {
                user_id: user_id.to_owned(),
                answers,
                source,
                settings,
                now: self.auth.now(),
                same_answer_ms: SAME_ANSWER_MS,
            })
            .await
    }

    /// `user_id`'s consents and latest sends.
    pub async fn of_user(&self, user_id: &str) -> Result<SubscriptionsView> {
        self.auth.account(user_id).await?;
        let subscriptions = self
            .store()
            .consents_of(user_id)
            .await?
            .into_iter()
            .map(|c| ConsentView {
                template_id: c.template_id,
                status: c.status,
                remaining: c.remaining,
                source: c.source,
                accepted_at: c.accepted_at.map(rfc3339),
                updated_at: rfc3339(c.updated_at),
            })
            .collect();
        let sends = self
            .store()
            .sends_of(user_id, SENDS_SHOWN)
            .await?
            .into_iter()
            .map(|s| SendView {
                id: s.id,
                template_id: s.template_id,
                sent_at: rfc3339(s.sent_at),
                errcode: s.errcode,
                msgid: s.msgid,
                delivery: s.delivery,
                delivery_code: s.delivery_code,
                delivered_at: s.delivered_at.map(rfc3339),
            })
            .collect();
        Ok(SubscriptionsView {
            subscriptions,
            sends,
        })
    }
}

fn check_template(id: &str) -> Result<()> {
    let ok = (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "template id {:?} must be 1 to 128 of [A-Za-z0-9_-]",
            id.chars().take(40).collect::<String>()
        )))
    }
}

/// Refuses, before WeChat is asked, what WeChat would refuse.
fn check_request(r: &MessageRequest) -> Result<()> {
    check_template(&r.template_id)?;
    let bad = |m: &str| Err(Error::InvalidRequest(m.to_owned()));
    let Some(fields) = r.data.as_object() else {
        return bad(
            "data must be an object of the template's fields: {\"thing1\": {\"value\": \"…\"}}",
        );
    };
    if fields.is_empty() || fields.len() > MAX_FIELDS {
        return bad("data must have 1 to 32 fields");
    }
    for (name, field) in fields {
        if !field.get("value").is_some_and(Value::is_string) {
            return Err(Error::InvalidRequest(format!(
                "data.{name} must be {{\"value\": \"text\"}}"
            )));
        }
    }
    if r.page
        .as_ref()
        .is_some_and(|p| p.is_empty() || p.len() > 1024)
    {
        return bad("page must be 1 to 1024 characters");
    }
    if r.miniprogram_state
        .as_deref()
        .is_some_and(|s| !["developer", "trial", "formal"].contains(&s))
    {
        return bad("miniprogram_state must be developer, trial or formal");
    }
    if r.lang
        .as_deref()
        .is_some_and(|l| !["zh_CN", "en_US", "zh_HK", "zh_TW"].contains(&l))
    {
        return bad("lang must be zh_CN, en_US, zh_HK or zh_TW");
    }
    Ok(())
}
