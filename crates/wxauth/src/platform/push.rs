//! Message push (消息推送): WeChat's calls to `/v1/wechat/push/{appid}`,
//! checked before anything is read. A refusal changes nothing, is counted
//! (`wxauth_push_refused_total{reason}`) and logged without the request's
//! content.

use std::collections::HashMap;
use std::sync::Arc;

use wechat_miniapp::Clock;
use wechat_miniapp::push::PushKeys;
use wechat_miniapp::push_body::parse_body;
use wechat_miniapp::push_event::{PushEvent, read_event};

use crate::config::App;
use crate::error::{Error, Result};

/// How far a push's timestamp may be from this server's clock. WeChat
/// signs each call as it sends it; an old signature is a replay.
pub const MAX_SKEW_SECS: i64 = 300;

/// A push's query: its signatures, timestamp and nonce (absent ones
/// empty, and refused as wrong).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct PushQuery {
    /// Over token, timestamp and nonce (every push).
    pub signature: String,
    /// Unix seconds, as sent.
    pub timestamp: String,
    /// As sent.
    pub nonce: String,
    /// `aes` in compatible and safe mode.
    pub encrypt_type: String,
    /// Over token, timestamp, nonce and `Encrypt` (compatible and safe).
    pub msg_signature: String,
}

/// The longest `echostr` answered (WeChat's are about 20 digits).
const MAX_ECHOSTR: usize = 128;

/// The URL check's query: `signature`, `timestamp`, `nonce`, `echostr`
/// (absent ones empty, and refused as wrong).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct UrlCheck {
    /// sha1 over the sorted token, timestamp and nonce.
    pub signature: String,
    /// Unix seconds, as sent.
    pub timestamp: String,
    /// As sent.
    pub nonce: String,
    /// What to answer when the signature is right.
    pub echostr: String,
}

/// Each app's push settings, and the clock that judges timestamps.
#[derive(Clone)]
pub struct PushDesk {
    apps: Arc<HashMap<String, PushKeys>>,
    clock: Arc<dyn Clock>,
}

impl PushDesk {
    /// The apps with a push Token configured.
    pub fn new(apps: &[App], clock: Arc<dyn Clock>) -> Self {
        Self {
            apps: Arc::new(
                apps.iter()
                    .filter_map(|a| a.push.clone().map(|k| (a.appid.clone(), k)))
                    .collect(),
            ),
            clock,
        }
    }

    /// Answers WeChat's URL check: `echostr` when the signature is this
    /// app's and fresh.
    pub fn check_url(&self, appid: &str, check: &UrlCheck) -> Result<String> {
        let keys = self.keys(appid)?;
        self.fresh(appid, &check.timestamp)?;
        if check.echostr.is_empty()
            || check.echostr.len() > MAX_ECHOSTR
            || !check.echostr.bytes().all(|b| b.is_ascii_graphic())
        {
            refused(appid, "bad_request");
            return Err(Error::InvalidRequest(format!(
                "echostr must be 1 to {MAX_ECHOSTR} printable ASCII characters"
            )));
        }
        if !keys.check_signature(&check.signature, &check.timestamp, &check.nonce) {
            refused(appid, "signature");
            return Err(Error::Unauthorized(
                "the push signature does not match this app's push_token",
            ));
        }
        Ok(check.echostr.clone())
    }

    /// Checks and reads one push: with an EncodingAESKey configured only
    /// an encrypted one (its `msg_signature` covers the ciphertext), else
    /// a plain one (`signature`). Nothing is acted on before this passes.
    pub fn receive(&self, appid: &str, query: &PushQuery, body: &[u8]) -> Result<PushEvent> {
        let keys = self.keys(appid)?;
        self.fresh(appid, &query.timestamp)?;
        let malformed = |what: String| {
            refused(appid, "malformed");
            Error::InvalidRequest(what)
        };
        let outer = parse_body(body).map_err(|e| malformed(e.to_string()))?;
        let message = if keys.decrypts() {
            let encrypt = outer.get("Encrypt").and_then(|v| v.as_str());
            let (Some(encrypt), true) = (encrypt, query.encrypt_type == "aes") else {
                refused(appid, "not_encrypted");
                return Err(Error::Unauthorized(
                    "this app takes only encrypted pushes (it has a push_aes_key)",
                ));
            };
            if !keys.check_msg_signature(
                &query.msg_signature,
                &query.timestamp,
                &query.nonce,
                encrypt,
            ) {
                refused(appid, "signature");
                return Err(Error::Unauthorized(
                    "the push's msg_signature does not match this app's push_token",
                ));
            }
            let plain = keys.decrypt(encrypt).map_err(|e| {
                refused(appid, "ciphertext");
                Error::InvalidRequest(e.to_string())
            })?;
            parse_body(&plain).map_err(|e| malformed(e.to_string()))?
        } else {
            if !keys.check_signature(&query.signature, &query.timestamp, &query.nonce) {
                refused(appid, "signature");
                return Err(Error::Unauthorized(
                    "the push signature does not match this app's push_token",
                ));
            }
            outer
        };
        let event = read_event(&message).map_err(|e| malformed(e.to_string()))?;
        metrics::counter!("wxauth_push_events_total", "event" => event_name(&event)).increment(1);
        Ok(event)
    }

    /// A push whose body could not be read whole (over `limits.body_bytes`,
    /// or cut off): counted as a refusal like the others.
    pub fn unreadable(&self, appid: &str, why: String, too_large: bool) -> Error {
        if too_large {
            refused(appid, "too_large");
            Error::PayloadTooLarge(why)
        } else {
            refused(appid, "malformed");
            Error::InvalidRequest(why)
        }
    }

    fn keys(&self, appid: &str) -> Result<&PushKeys> {
        self.apps.get(appid).ok_or_else(|| {
            refused(appid, "unknown_app");
            Error::NotFound(format!(
                "no message push is configured for app {appid:?} (push_token in its [[apps]])"
            ))
        })
    }

    /// Refuses a timestamp that is not a number or is more than
    /// `MAX_SKEW_SECS` from now.
    fn fresh(&self, appid: &str, timestamp: &str) -> Result<()> {
        let now = self.clock.now_ms() / 1000;
        match timestamp.trim().parse::<i64>() {
            Ok(t) if (t - now).abs() <= MAX_SKEW_SECS => Ok(()),
            _ => {
                refused(appid, "stale");
                Err(Error::Unauthorized(
                    "the push timestamp is missing or more than 5 minutes from this server's clock",
                ))
            }
        }
    }
}

/// Counts and logs a refusal (never the request's content).
fn refused(appid: &str, reason: &'static str) {
    metrics::counter!("wxauth_push_refused_total", "reason" => reason).increment(1);
    tracing::warn!(appid, reason, "a message push was refused");
}

/// A push event's metric label (WeChat's name for those wxauth reads).
fn event_name(event: &PushEvent) -> &'static str {
    match event {
        PushEvent::MediaCheck { .. } => "wxa_media_check",
        PushEvent::SubscribePopup { .. } => "subscribe_msg_popup_event",
        PushEvent::SubscribeChange { .. } => "subscribe_msg_change_event",
        PushEvent::SubscribeSent { .. } => "subscribe_msg_sent_event",
        PushEvent::AuthorizationRevoked {
            account_closed: false,
            ..
        } => "user_authorization_revoke",
        PushEvent::AuthorizationRevoked { .. } => "user_authorization_cancellation",
        PushEvent::Other { .. } => "other",
    }
}
