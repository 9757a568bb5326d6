//! The typed client for WeChat's mini-program server API.
//!
//! One `reqwest` client with connect and total timeouts and a user agent; a
//! configurable base URL so the same code talks to WeChat or to the simulator.
//! Calls that WeChat may answer "busy" (-1) are retried with jittered backoff;
//! calls that consume a one-time code are never repeated after a request that
//! may have reached WeChat, except on -1, and if such a retry then meets
//! "code been used" the error says so.

use std::time::Duration;

use rand::Rng;
use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::answer::parse_answer;
use crate::crypto::login_state_signature;
use crate::error::{Error, Result};
use crate::secret::{AccessToken, AppSecret, LoginCode, PhoneCode, SessionKey};

/// WeChat's production API root.
pub const WECHAT_API_BASE: &str = "https://api.weixin.qq.com";

/// How the client reaches WeChat.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// API root, e.g. `https://api.weixin.qq.com` or a simulator's URL.
    pub base_url: String,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed for one attempt, from sending to the end of the body.
    pub timeout: Duration,
    /// Backoff for answers that may change on a retry.
    pub retry: RetryPolicy,
    /// `User-Agent` sent with every call.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            base_url: WECHAT_API_BASE.to_owned(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            user_agent: concat!("wechat-miniapp/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Exponential backoff with full jitter.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The cap of the first wait; doubled each attempt.
    pub base_delay: Duration,
    /// The largest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
            .min(self.max_delay);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }
}

/// Installs ring as the process's TLS crypto provider, unless one is
/// installed already. reqwest is built here without a bundled provider (to
/// avoid aws-lc's C build), so call this before building any other
/// `reqwest::Client` in the same program; [`WechatClient::new`] calls it.
pub fn ensure_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether repeating a call could do harm if the first attempt reached WeChat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reading only: repeat after any temporary failure.
    Safe,
    /// Consumes a one-time code or rotates a key: repeat only when WeChat
    /// said it is busy or the request certainly was not sent.
    OnlyIfNotApplied,
}

/// A text to check with `msg_sec_check`.
#[derive(Debug, Clone, Copy)]
pub struct TextCheck<'a> {
    /// The text (at most 2,500 characters: the caller splits longer ones).
    pub content: &'a str,
    /// The author, who must have opened the mini program in the last two hours.
    pub openid: &'a str,
    /// 1 profile, 2 comment, 3 forum, 4 social log.
    pub scene: u8,
    /// The author's nickname (scene 1), when known.
    pub nickname: Option<&'a str>,
}

/// `msg_sec_check`'s suggestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suggest {
    /// Nothing found.
    Pass,
    /// Doubtful: a person should look.
    Review,
    /// To be refused.
    Risky,
}

/// WeChat's verdict on a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextVerdict {
    /// Pass, review or risky.
    pub suggest: Suggest,
    /// The main label (100 normal, 20001 politics, 20002 porn, …).
    pub label: i64,
    /// WeChat's id of the check.
    pub trace_id: String,
}

#[derive(Debug, Deserialize)]
struct TraceAnswer {
    trace_id: String,
}

#[derive(Debug, Deserialize)]
struct TextCheckAnswer {
    #[serde(default)]
    trace_id: String,
    result: TextCheckResult,
}

#[derive(Debug, Deserialize)]
struct TextCheckResult {
    suggest: String,
    label: LooseNumber,
}

/// A number WeChat sends as a number or as a numeric string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LooseNumber {
    Number(i64),
    Text(String),
}

impl LooseNumber {
    fn as_i64(&self) -> i64 {
        match self {
            LooseNumber::Number(n) => *n,
            LooseNumber::Text(t) => t.trim().parse().unwrap_or(0),
        }
    }
}

/// A subscribe message to send.
#[derive(Debug, Clone, Copy)]
pub struct SubscribeMessage<'a> {
    /// The user's openid.
    pub touser: &'a str,
    /// The template.
    pub template_id: &'a str,
    /// The page opened when the message is tapped.
    pub page: Option<&'a str>,
    /// The template's fields: `{"thing1": {"value": "…"}, …}`.
    pub data: &'a serde_json::Value,
    /// `developer`, `trial` or `formal` (WeChat's default).
    pub miniprogram_state: Option<&'a str>,
    /// `zh_CN` (default), `en_US`, `zh_HK`, `zh_TW`.
    pub lang: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct SentAnswer {
    #[serde(default)]
    msgid: Option<LooseId>,
}

/// An id WeChat sends as a number or a string (msgid is a 64-bit number,
/// past JavaScript's exact range: kept as text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LooseId {
    Number(u64),
    Text(String),
}

impl LooseId {
    fn text(self) -> String {
        match self {
            LooseId::Number(n) => n.to_string(),
            LooseId::Text(t) => t,
        }
    }
}

/// The answer to `jscode2session`.
#[derive(Debug, Clone, Deserialize)]
pub struct Code2Session {
    /// The user's id within this app.
    pub openid: String,
    /// The user's current session_key. Keep it on the server.
    pub session_key: SessionKey,
    /// The user's id across the Open Platform account, when the app is bound to one.
    #[serde(default)]
    pub unionid: Option<String>,
}

/// An access token and its lifetime as WeChat gave it.
#[derive(Debug, Clone, Deserialize)]
pub struct AccessTokenGrant {
    /// The token.
    pub access_token: AccessToken,
    /// Seconds until it expires (at most 7200).
    pub expires_in: u64,
}

/// The answer to `resetusersessionkey`.
#[derive(Debug, Clone, Deserialize)]
pub struct ResetSessionKey {
    /// The user whose key was reset.
    pub openid: String,
    /// The user's new session_key.
    pub session_key: SessionKey,
}

/// A phone number from `getuserphonenumber`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct PhoneInfo {
    /// The number, with the country code for numbers outside China.
    #[serde(rename = "phoneNumber")]
    pub phone_number: String,
    /// The number without the country code.
    #[serde(rename = "purePhoneNumber")]
    pub pure_phone_number: String,
    /// The country code. WeChat's doc example shows a number; real answers
    /// send a string. Both are accepted.
    #[serde(rename = "countryCode", deserialize_with = "string_or_number")]
    pub country_code: String,
    /// Which app and when.
    pub watermark: Watermark,
}

/// The watermark WeChat puts in phone numbers and decrypted payloads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Watermark {
    /// The app the data was made for.
    pub appid: String,
    /// When the user obtained the data, Unix seconds.
    pub timestamp: i64,
}

#[derive(Deserialize)]
struct PhoneAnswer {
    phone_info: PhoneInfo,
}

#[derive(Deserialize)]
struct Empty {}

fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        S(String),
        N(i64),
    }
    Ok(match Either::deserialize(d)? {
        Either::S(s) => s,
        Either::N(n) => n.to_string(),
    })
}

/// A client for WeChat's mini-program server API. Cheap to clone.
#[derive(Debug, Clone)]
pub struct WechatClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
}

impl WechatClient {
    /// Builds a client. Fails only on an unusable base URL or TLS setup.
    pub fn new(config: ClientConfig) -> Result<Self> {
        ensure_tls_provider();
        let mut base_text = config.base_url.clone();
        if !base_text.ends_with('/') {
            base_text.push('/');
        }
        let base = Url::parse(&base_text)
            .map_err(|e| Error::Config(format!("base_url {:?}: {e}", config.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base_url {:?}: must be http or https",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .user_agent(config.user_agent)
            // WeChat's API does not redirect, and a redirect would carry
            // the app secret in its query to wherever it points. Not
            // following them also spares every call the redirect layer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            retry: config.retry,
        })
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .map_err(|e| Error::Config(format!("path {path}: {e}")))
    }

    /// Exchanges a `wx.login` code for the user's openid, session_key and unionid.
    pub async fn code2session(
        &self,
        appid: &str,
        secret: &AppSecret,
        code: &LoginCode,
    ) -> Result<Code2Session> {
        let url = self.url("sns/jscode2session")?;
        let answer: Code2Session = self
            .call("jscode2session", Repeat::OnlyIfNotApplied, || {
                self.http.get(url.clone()).query(&[
                    ("appid", appid),
                    ("secret", secret.expose()),
                    ("js_code", code.expose()),
                    ("grant_type", "authorization_code"),
                ])
            })
            .await?;
        if answer.openid.is_empty() {
            return Err(Error::MalformedAnswer(
                "jscode2session answered an empty openid".into(),
            ));
        }
        Ok(answer)
    }

    /// `GET /cgi-bin/token`. Each call invalidates the app's previous token
    /// (after a 5-minute overlap), so only a single fetcher per app may use it.
    pub async fn get_access_token(
        &self,
        appid: &str,
        secret: &AppSecret,
    ) -> Result<AccessTokenGrant> {
        let url = self.url("cgi-bin/token")?;
        self.call("token", Repeat::Safe, || {
            self.http.get(url.clone()).query(&[
                ("grant_type", "client_credential"),
                ("appid", appid),
                ("secret", secret.expose()),
            ])
        })
        .await
    }

    /// `POST /cgi-bin/stable_token`. In normal mode every caller gets the same
    /// token until its last 5 minutes, so several fetchers do not fight.
    /// `force_refresh` invalidates the current token at once (20 a day).
    pub async fn get_stable_access_token(
        &self,
        appid: &str,
        secret: &AppSecret,
        force_refresh: bool,
    ) -> Result<AccessTokenGrant> {
        let url = self.url("cgi-bin/stable_token")?;
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": appid,
            "secret": secret.expose(),
            "force_refresh": force_refresh,
        });
        let repeat = if force_refresh {
            Repeat::OnlyIfNotApplied
        } else {
            Repeat::Safe
        };
        self.call("stable_token", repeat, || {
            self.http.post(url.clone()).json(&body)
        })
        .await
    }

    /// `GET /wxa/checksession`: is this still the user's current session_key?
    /// `Ok(())` if so; `Error::InvalidSignature` if not.
    pub async fn check_session(
        &self,
        access_token: &AccessToken,
        openid: &str,
        session_key: &SessionKey,
    ) -> Result<()> {
        let url = self.url("wxa/checksession")?;
        let signature = login_state_signature(session_key, b"");
        let _: Empty = self
            .call("checksession", Repeat::Safe, || {
                self.http.get(url.clone()).query(&[
                    ("access_token", access_token.expose()),
                    ("openid", openid),
                    ("signature", signature.as_str()),
                    ("sig_method", "hmac_sha256"),
                ])
            })
            .await?;
        Ok(())
    }

    /// `GET /wxa/resetusersessionkey`: replaces the user's session_key (the old
    /// one stops working) and returns the new one.
    pub async fn reset_user_session_key(
        &self,
        access_token: &AccessToken,
        openid: &str,
        session_key: &SessionKey,
    ) -> Result<ResetSessionKey> {
        let url = self.url("wxa/resetusersessionkey")?;
        let signature = login_state_signature(session_key, b"");
        self.call("resetusersessionkey", Repeat::OnlyIfNotApplied, || {
            self.http.get(url.clone()).query(&[
                ("access_token", access_token.expose()),
                ("openid", openid),
                ("signature", signature.as_str()),
                ("sig_method", "hmac_sha256"),
            ])
        })
        .await
    }

    /// `POST /wxa/business/getuserphonenumber`: the phone number behind a code
    /// from the phone-number button. With `openid`, WeChat also checks that the
    /// code belongs to that user.
    pub async fn get_user_phone_number(
        &self,
        access_token: &AccessToken,
        code: &PhoneCode,
        openid: Option<&str>,
    ) -> Result<PhoneInfo> {
        let url = self.url("wxa/business/getuserphonenumber")?;
        let mut body = serde_json::json!({ "code": code.expose() });
        if let Some(openid) = openid {
            body["openid"] = openid.into();
        }
        let answer: PhoneAnswer = self
            .call("getuserphonenumber", Repeat::OnlyIfNotApplied, || {
                self.http
                    .post(url.clone())
                    .query(&[("access_token", access_token.expose())])
                    .json(&body)
            })
            .await?;
        Ok(answer.phone_info)
    }

    /// `POST /wxa/msg_sec_check` (version 2): WeChat's verdict on a text
    /// a user wrote. `errcode` is 0 whatever the verdict: the answer's
    /// `result.suggest` decides (docs/wechat-platform.md §2a). A read
    /// only, so repeated after temporary failures.
    pub async fn msg_sec_check(
        &self,
        access_token: &AccessToken,
        check: &TextCheck<'_>,
    ) -> Result<TextVerdict> {
        let url = self.url("wxa/msg_sec_check")?;
        let mut body = serde_json::json!({
            "content": check.content,
            "version": 2,
            "scene": check.scene,
            "openid": check.openid,
        });
        if let Some(nickname) = check.nickname {
            body["nickname"] = nickname.into();
        }
        let answer: TextCheckAnswer = self
            .call("msg_sec_check", Repeat::Safe, || {
                self.http
                    .post(url.clone())
                    .query(&[("access_token", access_token.expose())])
                    .json(&body)
            })
            .await?;
        let suggest = match answer.result.suggest.as_str() {
            "pass" => Suggest::Pass,
            "review" => Suggest::Review,
            "risky" => Suggest::Risky,
            other => {
                return Err(Error::MalformedAnswer(format!(
                    "msg_sec_check suggested {other:?} (expected pass, review or risky)"
                )));
            }
        };
        Ok(TextVerdict {
            suggest,
            label: answer.result.label.as_i64(),
            trace_id: answer.trace_id,
        })
    }

    /// `POST /cgi-bin/message/subscribe/send`: a subscribe message to a
    /// user who consented. Not repeated after it may have been applied
    /// (a repeat could send twice and spend a second consent).
    pub async fn send_subscribe_message(
        &self,
        access_token: &AccessToken,
        message: &SubscribeMessage<'_>,
    ) -> Result<String> {
        let url = self.url("cgi-bin/message/subscribe/send")?;
        let mut body = serde_json::json!({
            "touser": message.touser,
            "template_id": message.template_id,
            "data": message.data,
        });
        for (key, value) in [
            ("page", message.page),
            ("miniprogram_state", message.miniprogram_state),
            ("lang", message.lang),
        ] {
            if let Some(v) = value {
                body[key] = v.into();
            }
        }
        let answer: SentAnswer = self
            .call("subscribe_send", Repeat::OnlyIfNotApplied, || {
                self.http
                    .post(url.clone())
                    .query(&[("access_token", access_token.expose())])
                    .json(&body)
            })
            .await?;
        Ok(answer.msgid.map(|m| m.text()).unwrap_or_default())
    }

    /// `POST /wxa/media_check_async` (version 2): starts WeChat's check
    /// of an image (or audio) WeChat fetches from `media_url`; the trace
    /// id its verdict will be pushed with (`wxa_media_check`, within 30
    /// minutes). Repeated only when surely not applied (a repeat would
    /// start a second check).
    pub async fn media_check_async(
        &self,
        access_token: &AccessToken,
        media_url: &str,
        media_type: u8,
        openid: &str,
        scene: u8,
    ) -> Result<String> {
        let url = self.url("wxa/media_check_async")?;
        let body = serde_json::json!({
            "media_url": media_url,
            "media_type": media_type,
            "version": 2,
            "scene": scene,
            "openid": openid,
        });
        let answer: TraceAnswer = self
            .call("media_check_async", Repeat::OnlyIfNotApplied, || {
                self.http
                    .post(url.clone())
                    .query(&[("access_token", access_token.expose())])
                    .json(&body)
            })
            .await?;
        Ok(answer.trace_id)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        api: &'static str,
        repeat: Repeat,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T> {
        let mut attempt = 1;
        loop {
            let result = self
                .send_once(request())
                .await
                .and_then(|body| parse_answer::<T>(&body));
            match result {
                Ok(value) => return Ok(value),
                Err(Error::CodeUsed { .. }) if attempt > 1 => {
                    return Err(Error::CodeUsed { after_retry: true });
                }
                Err(err) if attempt < self.retry.max_attempts && may_retry(&err, repeat) => {
                    let delay = self.retry.delay(attempt);
                    tracing::debug!(api, attempt, error = %err, ?delay, "retrying WeChat call");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(err) => {
                    tracing::debug!(api, attempt, error = %err, "WeChat call failed");
                    return Err(err);
                }
            }
        }
    }

    async fn send_once(&self, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let response = request.send().await.map_err(Error::from_reqwest)?;
        let status = response.status();
        let body = response.bytes().await.map_err(Error::from_reqwest)?;
        if !status.is_success() {
            // WeChat itself answers errors with 200; anything else came from a
            // proxy or an outage in between.
            return Err(Error::Transport {
                message: format!("HTTP status {status}"),
                not_sent: false,
            });
        }
        Ok(body.to_vec())
    }
}

fn may_retry(err: &Error, repeat: Repeat) -> bool {
    match err {
        // UNCONFIRMED: that -1 leaves a code unconsumed. It is documented as
        // "system busy, retry later", so retrying is what WeChat asks for.
        Error::Busy => true,
        Error::Transport { not_sent: true, .. } => true,
        Error::Transport {
            not_sent: false, ..
        }
        | Error::Timeout => repeat == Repeat::Safe,
        _ => false,
    }
}
