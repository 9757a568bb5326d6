//! Subscribe messages: each user's consent per template and the messages
//! sent to them. Consent changes and sends go through the group-commit
//! writer; each is one statement, so instances answering WeChat's pushes
//! and the operator's sends at once never lose a count.

use futures_util::future::BoxFuture;
use sqlx::Row;

use super::Store;
use super::exec::query;
use super::writer::{Tx, Write};
use crate::error::Result;

/// A user's consent to one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// The template.
    pub template_id: String,
    /// `accept`, `reject`, `ban` or `filter`.
    pub status: String,
    /// Sends the accepts still allow.
    pub remaining: i64,
    /// `wechat` (pushed) or `client` (reported by the mini program).
    pub source: String,
    /// The last accept, Unix milliseconds.
    pub accepted_at: Option<i64>,
    /// The last change, Unix milliseconds.
    pub updated_at: i64,
}

/// One answer to a template, as a consent event or the mini program says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentAnswer {
    /// The template.
    pub template_id: String,
    /// `accept`, `reject`, `ban` or `filter`.
    pub status: String,
}

/// Consent answers of one user to record.
#[derive(Debug, Clone)]
pub struct ConsentChange {
    /// The user.
    pub user_id: String,
    /// What they answered.
    pub answers: Vec<ConsentAnswer>,
    /// `wechat` or `client`.
    pub source: &'static str,
    /// From the settings page (an accept there allows no send by itself).
    pub settings: bool,
    /// Unix milliseconds.
    pub now: i64,
    /// An accept from the other source within this many milliseconds of
    /// the last is the same answer heard twice (the mini program's report
    /// and WeChat's push of one popup): counted once.
    pub same_answer_ms: i64,
}

/// An accept in the popup allows one more send, unless it is the same
/// answer already counted from the other source ($5 milliseconds).
const POPUP_ACCEPT: &str = "INSERT INTO subscriptions \
       (user_id, template_id, status, remaining, source, accepted_at, updated_at) \
     VALUES ($1, $2, 'accept', 1, $3, $4, $4) \
     ON CONFLICT (user_id, template_id) DO UPDATE SET \
       remaining = CASE \
         WHEN subscriptions.status = 'accept' \
          AND subscriptions.source <> excluded.source \
          AND subscriptions.accepted_at IS NOT NULL \
          AND excluded.accepted_at - subscriptions.accepted_at <= $5 \
           THEN subscriptions.remaining \
         WHEN subscriptions.status = 'accept' THEN subscriptions.remaining + 1 \
         ELSE 1 END, \
       source = CASE WHEN excluded.source = 'wechat' OR subscriptions.status <> 'accept' \
         THEN excluded.source ELSE subscriptions.source END, \
       status = 'accept', \
       accepted_at = excluded.accepted_at, \
       updated_at = excluded.updated_at";

/// An accept in the settings page: the template is on again, with the
/// sends it had (none if it was off).
const SETTINGS_ACCEPT: &str = "INSERT INTO subscriptions \
       (user_id, template_id, status, remaining, source, accepted_at, updated_at) \
     VALUES ($1, $2, 'accept', 0, $3, NULL, $4) \
     ON CONFLICT (user_id, template_id) DO UPDATE SET \
       remaining = CASE WHEN subscriptions.status = 'accept' \
         THEN subscriptions.remaining ELSE 0 END, \
       status = 'accept', source = excluded.source, updated_at = excluded.updated_at";

/// A reject (or ban, filter): no send allowed.
const REFUSAL: &str = "INSERT INTO subscriptions \
       (user_id, template_id, status, remaining, source, accepted_at, updated_at) \
     VALUES ($1, $2, $5, 0, $3, NULL, $4) \
     ON CONFLICT (user_id, template_id) DO UPDATE SET \
       status = excluded.status, remaining = 0, source = excluded.source, \
       updated_at = excluded.updated_at";

impl Write for ConsentChange {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for answer in &self.answers {
                let (user, template) = (&self.user_id, &answer.template_id);
                let q = match (answer.status.as_str(), self.settings) {
                    ("accept", false) => query(POPUP_ACCEPT)
                        .bind(user)
                        .bind(template)
                        .bind(self.source)
                        .bind(self.now)
                        .bind(self.same_answer_ms),
                    ("accept", true) => query(SETTINGS_ACCEPT)
                        .bind(user)
                        .bind(template)
                        .bind(self.source)
                        .bind(self.now),
                    (status, _) => query(REFUSAL)
                        .bind(user)
                        .bind(template)
                        .bind(self.source)
                        .bind(self.now)
                        .bind(status),
                };
                q.execute(tx).await?;
            }
            Ok(())
        })
    }
}

/// What taking one send of a template found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// One send taken from an accept.
    Taken,
    /// The user's consent is known and allows no send.
    KnownNone,
    /// Nothing known: WeChat decides.
    Unknown,
}

struct ReserveSend {
    user_id: String,
    template_id: String,
    now: i64,
}

impl Write for ReserveSend {
    type Output = Reservation;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<Reservation>> {
        Box::pin(async move {
            let taken = query(
                "UPDATE subscriptions SET remaining = remaining - 1, updated_at = $3 \
                 WHERE user_id = $1 AND template_id = $2 AND status = 'accept' AND remaining > 0",
            )
            .bind(&self.user_id)
            .bind(&self.template_id)
            .bind(self.now)
            .execute(tx)
            .await?;
            if taken.rows_affected() == 1 {
                return Ok(Reservation::Taken);
            }
            let known =
                query("SELECT 1 AS one FROM subscriptions WHERE user_id = $1 AND template_id = $2")
                    .bind(&self.user_id)
                    .bind(&self.template_id)
                    .fetch_optional(tx)
                    .await?;
            Ok(if known.is_some() {
                Reservation::KnownNone
            } else {
                Reservation::Unknown
            })
        })
    }
}

/// What becomes of a send's consent once WeChat answered.
struct Settle {
    user_id: String,
    template_id: String,
    /// Give a taken send back (WeChat did not send).
    give_back: bool,
    /// WeChat says no consent is left (43101).
    exhausted: bool,
    /// The send to record, if any.
    send: Option<SendRecord>,
}

impl Write for Settle {
    type Output = ();
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            if self.give_back {
                query(
                    "UPDATE subscriptions SET remaining = remaining + 1 \
                     WHERE user_id = $1 AND template_id = $2 AND status = 'accept'",
                )
                .bind(&self.user_id)
                .bind(&self.template_id)
                .execute(tx)
                .await?;
            }
            if self.exhausted {
                query(
                    "UPDATE subscriptions SET remaining = 0 \
                     WHERE user_id = $1 AND template_id = $2",
                )
                .bind(&self.user_id)
                .bind(&self.template_id)
                .execute(tx)
                .await?;
            }
            if let Some(s) = &self.send {
                query(
                    "INSERT INTO message_sends (id, user_id, template_id, sent_at, errcode, msgid) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&s.id)
                .bind(&self.user_id)
                .bind(&s.template_id)
                .bind(s.sent_at)
                .bind(s.errcode)
                .bind(s.msgid.clone())
                .execute(tx)
                .await?;
            }
            Ok(())
        })
    }
}

/// A message sent (or refused) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRecord {
    /// wxauth's id of the send.
    pub id: String,
    /// The template.
    pub template_id: String,
    /// Unix milliseconds.
    pub sent_at: i64,
    /// WeChat's errcode (0: accepted; 43101: no consent, also when wxauth
    /// knew and did not call).
    pub errcode: i64,
    /// WeChat's message id.
    pub msgid: Option<String>,
    /// The pushed delivery result's `ErrorStatus` (`success`, …).
    pub delivery: Option<String>,
    /// Its `ErrorCode` (0: delivered).
    pub delivery_code: Option<i64>,
    /// When it was pushed, Unix milliseconds.
    pub delivered_at: Option<i64>,
}

struct Delivered {
    msgid: String,
    status: String,
    code: i64,
    at: i64,
}

impl Write for Delivered {
    type Output = bool;
    fn apply<'a>(&'a self, tx: &'a mut Tx<'_>) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move {
            let done = query(
                "UPDATE message_sends SET delivery = $2, delivery_code = $3, delivered_at = $4 \
                 WHERE msgid = $1",
            )
            .bind(&self.msgid)
            .bind(&self.status)
            .bind(self.code)
            .bind(self.at)
            .execute(tx)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

impl Store {
    /// Records consent answers.
    pub async fn record_consents(&self, change: ConsentChange) -> Result<()> {
        self.writer.submit(change).await
    }

    /// Takes one send of `template_id` from `user_id`'s accepts.
    pub async fn reserve_send(
        &self,
        user_id: &str,
        template_id: &str,
        now: i64,
    ) -> Result<Reservation> {
        self.writer
            .submit(ReserveSend {
                user_id: user_id.to_owned(),
                template_id: template_id.to_owned(),
                now,
            })
            .await
    }

    /// Records what WeChat answered a send (or that it was not asked):
    /// the send's row, a taken send given back, a consent found exhausted.
    pub async fn settle_send(
        &self,
        user_id: &str,
        send: SendRecord,
        give_back: bool,
        exhausted: bool,
    ) -> Result<()> {
        self.writer
            .submit(Settle {
                user_id: user_id.to_owned(),
                template_id: send.template_id.clone(),
                give_back,
                exhausted,
                send: Some(send),
            })
            .await
    }

    /// Gives a taken send back without recording one (the call failed
    /// before WeChat answered).
    pub async fn give_back_send(&self, user_id: &str, template_id: &str) -> Result<()> {
        self.writer
            .submit(Settle {
                user_id: user_id.to_owned(),
                template_id: template_id.to_owned(),
                give_back: true,
                exhausted: false,
                send: None,
            })
            .await
    }

    /// Records a pushed delivery result; false when no send has `msgid`.
    pub async fn record_delivery(
        &self,
        msgid: &str,
        status: &str,
        code: i64,
        at: i64,
    ) -> Result<bool> {
        self.writer
            .submit(Delivered {
                msgid: msgid.to_owned(),
                status: status.to_owned(),
                code,
                at,
            })
            .await
    }

    /// A user's consents, by template.
    pub async fn consents_of(&self, user_id: &str) -> Result<Vec<ConsentRecord>> {
        let rows = sqlx::query(
            "SELECT template_id, status, remaining, source, accepted_at, updated_at \
             FROM subscriptions WHERE user_id = $1 ORDER BY template_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConsentRecord {
                    template_id: r.try_get("template_id")?,
                    status: r.try_get("status")?,
                    remaining: r.try_get("remaining")?,
                    source: r.try_get("source")?,
                    accepted_at: r.try_get("accepted_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// A user's latest `limit` sends, newest first.
    pub async fn sends_of(&self, user_id: &str, limit: i64) -> Result<Vec<SendRecord>> {
        let rows = sqlx::query(
            "SELECT id, template_id, sent_at, errcode, msgid, delivery, delivery_code, delivered_at \
             FROM message_sends WHERE user_id = $1 ORDER BY sent_at DESC, id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SendRecord {
                    id: r.try_get("id")?,
                    template_id: r.try_get("template_id")?,
                    sent_at: r.try_get("sent_at")?,
                    errcode: r.try_get("errcode")?,
                    msgid: r.try_get("msgid")?,
                    delivery: r.try_get("delivery")?,
                    delivery_code: r.try_get("delivery_code")?,
                    delivered_at: r.try_get("delivered_at")?,
                })
            })
            .collect()
    }
}
