//! WeChat's message push (消息推送), from WeChat's side: events sent to an
//! app's configured URL, signed, and in safe or compatible mode encrypted,
//! as WeChat does (`docs/wechat-platform.md` §1), and sent again when the
//! server does not answer `success` in time.
//!
//! Every push is recorded ([`PushRecord`], `GET /sim/v1/pushes`) so a test
//! can wait for it to be delivered or given up.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use wechat_miniapp::push::PushKeys;

use crate::state::SimError;
use crate::{Simulator, lock};

/// How WeChat sends an app's pushes (the console's 数据加密方式).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    /// 明文: the fields as they are; `signature` only.
    Plain,
    /// 兼容: the fields and `Encrypt` beside them.
    Compatible,
    /// 安全: `Encrypt` only (the default when a key is given).
    #[default]
    Safe,
}

/// The console's 数据格式.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushFormat {
    /// JSON (the default).
    #[default]
    Json,
    /// XML.
    Xml,
}

/// Where and how an app's pushes go: what the developer enters in the
/// console's 消息推送配置.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushTarget {
    /// The app.
    pub appid: String,
    /// The server's URL (`http://host:port/v1/wechat/push/{appid}` for wxauth).
    pub url: String,
    /// The Token (3 to 32 letters and digits).
    pub token: String,
    /// The EncodingAESKey (43 letters and digits); absent: plain mode.
    #[serde(default)]
    pub aes_key: Option<String>,
    /// Plain, compatible or safe; the default is safe with a key, plain without.
    #[serde(default)]
    pub mode: Option<PushMode>,
    /// JSON (default) or XML.
    #[serde(default)]
    pub format: PushFormat,
    /// How long to wait for `success` (WeChat: 5 s).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Sends in all, the first included (WeChat: 3).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_timeout_ms() -> u64 {
    5000
}

fn default_attempts() -> u32 {
    3
}

/// A configured target, its keys checked.
#[derive(Debug, Clone)]
pub(crate) struct ReadyTarget {
    target: PushTarget,
    mode: PushMode,
    keys: PushKeys,
}

impl ReadyTarget {
    pub(crate) fn new(target: PushTarget) -> Result<Self, SimError> {
        let bad = |what: &str| SimError::InvalidRequest(what.to_owned());
        if !(target.url.starts_with("http://") || target.url.starts_with("https://")) {
            return Err(bad("url must be an http:// or https:// URL"));
        }
        if target.attempts == 0 || target.attempts > 10 {
            return Err(bad("attempts must be 1 to 10"));
        }
        if target.timeout_ms == 0 || target.timeout_ms > 60_000 {
            return Err(bad("timeout_ms must be 1 to 60000"));
        }
        let keys = PushKeys::new(&target.appid, &target.token, target.aes_key.as_deref())
            .map_err(|e| SimError::InvalidRequest(e.to_string()))?;
        let mode = match (target.mode, keys.decrypts()) {
            (None, true) => PushMode::Safe,
            (None, false) | (Some(PushMode::Plain), _) => PushMode::Plain,
            (Some(m), true) => m,
            (Some(_), false) => return Err(bad("compatible and safe mode need an aes_key")),
        };
        Ok(Self { target, mode, keys })
    }
}

/// One push and how its delivery went.
#[derive(Debug, Clone, Serialize)]
pub struct PushRecord {
    /// Numbered from 1 in the order pushed.
    pub id: u64,
    /// The app.
    pub appid: String,
    /// The event's name (`Event`).
    pub event: String,
    /// Sends so far.
    pub attempts: u32,
    /// The last answer: `200 success`, `401 …`, or the transport error.
    pub last_answer: String,
    /// Whether the server acknowledged it.
    pub delivered: bool,
    /// Whether sending is over (delivered, or every attempt used).
    pub done: bool,
}

/// Pushes kept for `GET /sim/v1/pushes` (the oldest are forgotten).
const KEPT: usize = 1000;

/// The mini program's original id (`gh_…`), derived from the appid: the
/// `ToUserName` of every push.
pub(crate) fn original_id(appid: &str) -> String {
    format!(
        "gh_{}",
        &hex::encode(Sha256::digest(appid.as_bytes()))[..12]
    )
}

/// An event's common fields: to the app, from `openid`, now.
pub(crate) fn event(appid: &str, openid: &str, now_ms: i64, name: &str) -> Map<String, Value> {
    let Value::Object(map) = json!({
        "ToUserName": original_id(appid),
        "FromUserName": openid,
        "CreateTime": now_ms / 1000,
        "MsgType": "event",
        "Event": name,
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

/// A subscribe event's `List` as WeChat's XML nests it: inside
/// `SubscribeMsgPopupEvent` (or `…ChangeEvent`, `…SentEvent`); JSON keeps
/// it at the top (docs/wechat-platform.md §3b).
fn xml_shape(message: &Map<String, Value>) -> Map<String, Value> {
    let container = match message.get("Event").and_then(Value::as_str) {
        Some("subscribe_msg_popup_event") => "SubscribeMsgPopupEvent",
        Some("subscribe_msg_change_event") => "SubscribeMsgChangeEvent",
        Some("subscribe_msg_sent_event") => "SubscribeMsgSentEvent",
        _ => return message.clone(),
    };
    let mut shaped = message.clone();
    if let Some(list) = shaped.remove("List") {
        shaped.insert(container.into(), json!({ "List": list }));
    }
    shaped
}

/// A message as XML, as WeChat writes it: text in CDATA, numbers bare, an
/// object's fields nested, an array's items as repeated elements.
pub fn to_xml(message: &Map<String, Value>) -> String {
    fn element(out: &mut String, name: &str, value: &Value) {
        match value {
            Value::Array(items) => {
                for item in items {
                    element(out, name, item);
                }
            }
            Value::Object(fields) => {
                out.push_str(&format!("<{name}>"));
                for (k, v) in fields {
                    element(out, k, v);
                }
                out.push_str(&format!("</{name}>"));
            }
            Value::String(s) => {
                // A "]]>" inside is split across two CDATA sections.
                let s = s.replace("]]>", "]]]]><![CDATA[>");
                out.push_str(&format!("<{name}><![CDATA[{s}]]></{name}>"));
            }
            Value::Null => out.push_str(&format!("<{name}></{name}>")),
            other => out.push_str(&format!("<{name}>{other}</{name}>")),
        }
    }
    let mut out = String::from("<xml>");
    for (k, v) in message {
        element(&mut out, k, v);
    }
    out.push_str("</xml>");
    out
}

fn nonce() -> String {
    rand::rng()
        .random_range(100_000_000u64..10_000_000_000)
        .to_string()
}

/// A send's query parameters and body.
type SignedRequest = (Vec<(&'static str, String)>, String);

/// One send's query and body, signed (and encrypted) afresh, as WeChat
/// does on every attempt.
fn signed_request(
    ready: &ReadyTarget,
    message: &Map<String, Value>,
    now_ms: i64,
) -> Result<SignedRequest, String> {
    let timestamp = (now_ms / 1000).to_string();
    let nonce = nonce();
    let mut query = vec![
        ("signature", ready.keys.signature(&timestamp, &nonce)),
        ("timestamp", timestamp.clone()),
        ("nonce", nonce.clone()),
    ];
    if let Some(openid) = message.get("FromUserName").and_then(Value::as_str) {
        query.push(("openid", openid.to_owned()));
    }
    let plain = match ready.target.format {
        PushFormat::Json => Value::Object(message.clone()).to_string(),
        PushFormat::Xml => to_xml(&xml_shape(message)),
    };
    if ready.mode == PushMode::Plain {
        return Ok((query, plain));
    }
    let encrypt = ready
        .keys
        .encrypt(plain.as_bytes(), rand::rng().random())
        .map_err(|e| e.to_string())?;
    query.push(("encrypt_type", "aes".to_owned()));
    query.push((
        "msg_signature",
        ready.keys.msg_signature(&timestamp, &nonce, &encrypt),
    ));
    let mut outer = if ready.mode == PushMode::Compatible {
        message.clone()
    } else {
        let mut m = Map::new();
        if let Some(to) = message.get("ToUserName") {
            m.insert("ToUserName".into(), to.clone());
        }
        m
    };
    outer.insert("Encrypt".into(), Value::String(encrypt));
    let body = match ready.target.format {
        PushFormat::Json => Value::Object(outer).to_string(),
        PushFormat::Xml => to_xml(&outer),
    };
    Ok((query, body))
}

impl Simulator {
    /// Sets where `appid`'s pushes go (as `POST /sim/v1/push-targets`).
    pub fn set_push_target(&self, target: PushTarget) -> Result<(), SimError> {
        self.state().require_known(&target.appid)?;
        let ready = ReadyTarget::new(target)?;
        lock(&self.shared.pushes)
            .targets
            .insert(ready.target.appid.clone(), ready);
        Ok(())
    }

    /// Every push so far (the last thousand), oldest first.
    pub fn pushes(&self) -> Vec<PushRecord> {
        lock(&self.shared.pushes).log.clone()
    }

    /// Sends `message` to `appid`'s push URL in the background; its
    /// record's id. Refused when the app has no push target.
    pub(crate) fn push(&self, appid: &str, message: Map<String, Value>) -> Result<u64, SimError> {
        let (ready, id) = {
            let mut pushes = lock(&self.shared.pushes);
            let ready = pushes.targets.get(appid).cloned().ok_or_else(|| {
                SimError::InvalidRequest(format!(
                    "app {appid:?} has no push URL: set one with POST /sim/v1/push-targets"
                ))
            })?;
            pushes.next_id += 1;
            let id = pushes.next_id;
            pushes.log.push(PushRecord {
                id,
                appid: appid.to_owned(),
                event: message
                    .get("Event")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                attempts: 0,
                last_answer: String::new(),
                delivered: false,
                done: false,
            });
            if pushes.log.len() > KEPT {
                let excess = pushes.log.len() - KEPT;
                pushes.log.drain(..excess);
            }
            (ready, id)
        };
        let sim = self.clone();
        tokio::spawn(async move { sim.deliver(ready, message, id).await });
        Ok(id)
    }

    async fn deliver(&self, ready: ReadyTarget, message: Map<String, Value>, id: u64) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(ready.target.timeout_ms))
            .build();
        for attempt in 1..=ready.target.attempts {
            let answer = match (&client, signed_request(&ready, &message, self.now())) {
                (Ok(client), Ok((query, body))) => {
                    let sent = client
                        .post(&ready.target.url)
                        .query(&query)
                        .header(
                            "content-type",
                            match ready.target.format {
                                PushFormat::Json => "application/json",
                                PushFormat::Xml => "text/xml",
                            },
                        )
                        .body(body)
                        .send()
                        .await;
                    match sent {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let text = r.text().await.unwrap_or_default();
                            // `success` or an empty body, with a 200 (§1c).
                            let ok = status == 200 && matches!(text.trim(), "success" | "");
                            (
                                ok,
                                format!("{status} {}", text.chars().take(200).collect::<String>()),
                            )
                        }
                        Err(e) => (false, e.to_string()),
                    }
                }
                (Err(e), _) => (false, e.to_string()),
                (_, Err(e)) => (false, e),
            };
            let last = attempt == ready.target.attempts;
            if let Some(rec) = lock(&self.shared.pushes)
                .log
                .iter_mut()
                .find(|r| r.id == id)
            {
                rec.attempts = attempt;
                rec.last_answer = answer.1;
                rec.delivered = answer.0;
                rec.done = answer.0 || last;
            }
            if answer.0 {
                return;
            }
        }
    }
}

impl Simulator {
    /// Records a user's answer to a subscribe template (the consent popup,
    /// or with `settings` the settings page) and pushes the event when the
    /// app has a push URL; the push's id.
    pub fn subscribe(
        &self,
        appid: &str,
        user: Option<&str>,
        openid: Option<&str>,
        template_id: &str,
        accept: bool,
        settings: bool,
    ) -> Result<Option<u64>, SimError> {
        let openid = {
            let mut state = self.state();
            let openid = state.openid_for(appid, user, openid)?;
            state.consent(appid, &openid, template_id, accept)?;
            openid
        };
        let status = if accept { "accept" } else { "reject" };
        let (name, item) = if settings {
            (
                "subscribe_msg_change_event",
                json!({"TemplateId": template_id, "SubscribeStatusString": status}),
            )
        } else {
            (
                "subscribe_msg_popup_event",
                json!({"TemplateId": template_id, "SubscribeStatusString": status, "PopupScene": "0"}),
            )
        };
        let mut message = event(appid, &openid, self.now(), name);
        message.insert("List".into(), item);
        self.push_if_configured(appid, message)
    }

    /// Runs each media check asked for: after the configured delay, the
    /// image is fetched from its URL as WeChat would, judged, and the
    /// verdict pushed as `wxa_media_check` (when the app has a push URL).
    /// Every check is listed by `GET /sim/v1/media-checks`.
    pub(crate) fn run_media_checks(&self) {
        let (checks, delay) = {
            let mut state = self.state();
            let delay = state.content_rules().media_delay_ms;
            (std::mem::take(&mut state.media_checks), delay)
        };
        for (appid, openid, trace_id, url) in checks {
            let sim = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let fetched = match reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                {
                    Ok(client) => match client.get(&url).send().await {
                        Ok(r) if r.status().is_success() => r
                            .bytes()
                            .await
                            .map(|b| b.to_vec())
                            .map_err(|e| e.to_string()),
                        Ok(r) => Err(format!("HTTP {}", r.status())),
                        Err(e) => Err(e.to_string()),
                    },
                    Err(e) => Err(e.to_string()),
                };
                let verdict = fetched
                    .as_ref()
                    .ok()
                    .map(|bytes| crate::state::SimState::judge_image(bytes));
                let mut pushes = lock(&sim.shared.pushes);
                if pushes.media.len() >= KEPT {
                    pushes.media.remove(0);
                }
                pushes.media.push(MediaCheckRecord {
                    appid: appid.clone(),
                    trace_id: trace_id.clone(),
                    fetched: fetched
                        .as_ref()
                        .map_or_else(Clone::clone, |b| format!("{} bytes", b.len())),
                    suggest: verdict.map(|v| v.0.to_owned()),
                });
                drop(pushes);
                // UNCONFIRMED what WeChat pushes for an image it could not
                // fetch: the simulator pushes nothing (the check stays open).
                let Some((suggest, label)) = verdict else {
                    return;
                };
                let mut message = event(&appid, &openid, sim.now(), "wxa_media_check");
                message.insert("appid".into(), json!(appid));
                message.insert("trace_id".into(), json!(trace_id));
                message.insert("version".into(), json!(2));
                message.insert("errcode".into(), json!(0));
                message.insert("errmsg".into(), json!("ok"));
                message.insert("result".into(), json!({"suggest": suggest, "label": label}));
                message.insert(
                    "detail".into(),
                    json!([{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}]),
                );
                let _ = sim.push_if_configured(&appid, message);
            });
        }
    }

    /// Every media check run so far (the last thousand), oldest first.
    pub fn media_checks(&self) -> Vec<MediaCheckRecord> {
        lock(&self.shared.pushes).media.clone()
    }

    /// Pushes the delivery result of each message sent since last time.
    pub(crate) fn push_deliveries(&self) {
        let sent = std::mem::take(&mut self.state().sent);
        for (appid, openid, template_id, msgid) in sent {
            let mut message = event(&appid, &openid, self.now(), "subscribe_msg_sent_event");
            message.insert(
                "List".into(),
                json!({"TemplateId": template_id, "MsgID": msgid, "ErrorCode": "0", "ErrorStatus": "success"}),
            );
            let _ = self.push_if_configured(&appid, message);
        }
    }

    fn push_if_configured(
        &self,
        appid: &str,
        message: Map<String, Value>,
    ) -> Result<Option<u64>, SimError> {
        if lock(&self.shared.pushes).targets.contains_key(appid) {
            self.push(appid, message).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// The pushes' side of the simulator's state.
#[derive(Debug, Default)]
pub(crate) struct Pushes {
    targets: std::collections::HashMap<String, ReadyTarget>,
    log: Vec<PushRecord>,
    next_id: u64,
    media: Vec<MediaCheckRecord>,
}

/// One media check the simulator ran.
#[derive(Debug, Clone, Serialize)]
pub struct MediaCheckRecord {
    /// The app.
    pub appid: String,
    /// The id `media_check_async` answered.
    pub trace_id: String,
    /// `N bytes`, or why the image could not be fetched.
    pub fetched: String,
    /// The verdict pushed (none when the image could not be fetched).
    pub suggest: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_nests_objects_repeats_arrays_and_keeps_cdata_whole() {
        let Value::Object(m) = json!({
            "ToUserName": "gh_1", "CreateTime": 17, "Text": "a]]>b",
            "SubscribeMsgPopupEvent": {"List": [{"TemplateId": "T1"}, {"TemplateId": "T2"}]},
        }) else {
            unreachable!()
        };
        let xml = to_xml(&m);
        assert!(xml.starts_with("<xml>") && xml.ends_with("</xml>"), "{xml}");
        assert!(xml.contains("<CreateTime>17</CreateTime>"), "{xml}");
        assert!(
            xml.contains(
                "<SubscribeMsgPopupEvent><List><TemplateId><![CDATA[T1]]></TemplateId></List>\
                 <List><TemplateId><![CDATA[T2]]></TemplateId></List></SubscribeMsgPopupEvent>"
            ),
            "{xml}"
        );
        // What WeChat's readers (and wxauth's) read back is the same text.
        let back = wechat_miniapp::push_body::parse_body(xml.as_bytes()).unwrap();
        assert_eq!(back["Text"], "a]]>b");
        assert_eq!(back["ToUserName"], "gh_1");
    }

    #[test]
    fn every_mode_is_signed_and_safe_mode_carries_only_the_ciphertext() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let target = |mode, format| PushTarget {
            appid: "wxa".into(),
            url: "http://127.0.0.1:1/".into(),
            token: "AAAAA".into(),
            aes_key: Some(key.into()),
            mode,
            format,
            timeout_ms: 5000,
            attempts: 3,
        };
        let message = event(
            "wxa",
            "oUSER",
            1_700_000_000_000,
            "user_authorization_revoke",
        );
        for format in [PushFormat::Json, PushFormat::Xml] {
            let ready = ReadyTarget::new(target(None, format)).unwrap();
            assert_eq!(ready.mode, PushMode::Safe);
            let (query, body) = signed_request(&ready, &message, 1_700_000_000_000).unwrap();
            let q = |n: &str| query.iter().find(|(k, _)| *k == n).unwrap().1.clone();
            let outer = wechat_miniapp::push_body::parse_body(body.as_bytes()).unwrap();
            assert!(!outer.contains_key("FromUserName"), "{body}");
            let encrypt = outer["Encrypt"].as_str().unwrap();
            assert!(ready.keys.check_msg_signature(
                &q("msg_signature"),
                &q("timestamp"),
                &q("nonce"),
                encrypt
            ));
            let plain = ready.keys.decrypt(encrypt).unwrap();
            let inner = wechat_miniapp::push_body::parse_body(&plain).unwrap();
            assert_eq!(inner["FromUserName"], "oUSER");
            assert_eq!(inner["Event"], "user_authorization_revoke");
        }
        let compatible = ReadyTarget::new(target(Some(PushMode::Compatible), PushFormat::Json));
        let (_, body) = signed_request(&compatible.unwrap(), &message, 0).unwrap();
        assert!(
            body.contains("FromUserName") && body.contains("Encrypt"),
            "{body}"
        );
        let mut plain = target(None, PushFormat::Json);
        plain.aes_key = None;
        let ready = ReadyTarget::new(plain.clone()).unwrap();
        let (query, body) = signed_request(&ready, &message, 0).unwrap();
        assert!(
            !body.contains("Encrypt") && query.len() == 4,
            "{body} {query:?}"
        );
        plain.mode = Some(PushMode::Safe);
        assert!(ReadyTarget::new(plain).is_err());
    }
}
