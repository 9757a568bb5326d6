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

use sha2::{Digest, Sha256};

use crate::cache::{PushReceipts, SharedRedis};
use crate::config::{App, OnRevoke};
use crate::error::{Error, Result};

/// How far a push's timestamp may be from this server's clock. WeChat
/// signs each call as it sends it; an old signature is a replay.
pub const MAX_SKEW_SECS: i64 = 300;

/// How long the developer's service has to take a forwarded event.
pub const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// How long a push's receipt is kept: past WeChat's three sends and the
/// timestamp's window, so neither a retry nor a replay is acted on twice.
const RECEIPT_KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

/// A push that passed every check: its event, and the digest of its
/// decrypted content that tells a retry from a new event.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event read.
    pub event: PushEvent,
    /// The (decrypted) message, as JSON whatever its format: what a
    /// forwarded event carries.
    pub message: serde_json::Map<String, serde_json::Value>,
    /// sha256 of the app and the (decrypted) message.
    pub digest: [u8; 32],
}

/// One app's push settings.
#[derive(Debug, Clone)]
struct AppPush {
    keys: PushKeys,
    on_revoke: OnRevoke,
    forward: Option<String>,
}

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

/// Each app's push settings, the clock that judges timestamps, and the
/// receipts of pushes taken.
#[derive(Clone)]
pub struct PushDesk {
    apps: Arc<HashMap<String, AppPush>>,
    clock: Arc<dyn Clock>,
    pub(super) receipts: Arc<PushReceipts>,
    pub(super) forwarder: reqwest::Client,
}

impl std::fmt::Debug for PushDesk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushDesk")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PushDesk {
    /// The apps with a push Token configured; receipts shared through
    /// `redis` when there is one.
    pub fn new(apps: &[App], clock: Arc<dyn Clock>, redis: Option<Arc<SharedRedis>>) -> Self {
        Self {
            apps: Arc::new(
                apps.iter()
                    .filter_map(|a| {
                        let keys = a.push.clone()?;
                        let push = AppPush {
                            keys,
                            on_revoke: a.on_authorization_revoke,
                            forward: a.push_forward_url.clone(),
                        };
                        Some((a.appid.clone(), push))
                    })
                    .collect(),
            ),
            clock,
            receipts: Arc::new(PushReceipts::new(redis, RECEIPT_KEEP)),
            // Under WeChat's five seconds, so a slow service makes WeChat
            // send again rather than give up.
            forwarder: reqwest::Client::builder()
                .connect_timeout(std::time::Duration::from_secs(2))
                .timeout(FORWARD_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    /// Where `appid`'s events wxauth does not act on go, if anywhere.
    pub fn forward_url(&self, appid: &str) -> Option<&str> {
        self.apps.get(appid).and_then(|a| a.forward.as_deref())
    }

    /// What a revoked authorization does to `appid`'s users.
    pub fn on_revoke(&self, appid: &str) -> OnRevoke {
        self.apps
            .get(appid)
            .map_or(OnRevoke::default(), |a| a.on_revoke)
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
    pub fn receive(&self, appid: &str, query: &PushQuery, body: &[u8]) -> Result<Received> {
        let keys = self.keys(appid)?;
        self.fresh(appid, &query.timestamp)?;
        let malformed = |what: String| {
            refused(appid, "malformed");
            Error::InvalidRequest(what)
        };
        let outer = parse_body(body).map_err(|e| malformed(e.to_string()))?;
        let decrypted;
        let (message, content) = if keys.decrypts() {
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
            decrypted = keys.decrypt(encrypt).map_err(|e| {
                refused(appid, "ciphertext");
                Error::InvalidRequest(e.to_string())
            })?;
            let inner = parse_body(&decrypted).map_err(|e| malformed(e.to_string()))?;
            (inner, decrypted.as_slice())
        } else {
            if !keys.check_signature(&query.signature, &query.timestamp, &query.nonce) {
                refused(appid, "signature");
                return Err(Error::Unauthorized(
                    "the push signature does not match this app's push_token",
                ));
            }
            (outer, body)
        };
        let event = read_event(&message).map_err(|e| malformed(e.to_string()))?;
        metrics::counter!("wxauth_push_events_total", "event" => event_name(&event)).increment(1);
        let mut digest = Sha256::new();
        digest.update(appid.as_bytes());
        digest.update([0]);
        digest.update(content);
        Ok(Received {
            event,
            message,
            digest: digest.finalize().into(),
        })
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
        self.apps.get(appid).map(|a| &a.keys).ok_or_else(|| {
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
pub(super) fn event_name(event: &PushEvent) -> &'static str {
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
