//! Message push (消息推送): WeChat's calls to `/v1/wechat/push/{appid}`,
//! checked before anything is read. A refusal changes nothing, is counted
//! (`wxauth_push_refused_total{reason}`) and logged without the request's
//! content.

use std::collections::HashMap;
use std::sync::Arc;

use wechat_miniapp::Clock;
use wechat_miniapp::push::PushKeys;

use crate::config::App;
use crate::error::{Error, Result};

/// How far a push's timestamp may be from this server's clock. WeChat
/// signs each call as it sends it; an old signature is a replay.
pub const MAX_SKEW_SECS: i64 = 300;

/// The longest `echostr` answered (WeChat's are about 20 digits).
const MAX_ECHOSTR: usize = 128;

/// The URL check's query: `signature`, `timestamp`, `nonce`, `echostr`.
#[derive(Debug, Clone, Default)]
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
