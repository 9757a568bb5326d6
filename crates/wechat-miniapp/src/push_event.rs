//! The pushed events a mini-program backend acts on, read from a push's
//! body (`push_body::parse_body`, JSON or XML alike; facts in
//! `docs/wechat-platform.md` §2b, §3b, §4). Anything else is
//! [`PushEvent::Other`], to be forwarded or acknowledged.
//!
//! WeChat's JSON is loose: `CreateTime` a number or a string, `label` a
//! number or a string, a subscribe event's `List` an object for one item
//! and an array for several. Every reader here takes either.

use serde_json::{Map, Value};

/// One template's answer in a consent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateConsent {
    /// The template.
    pub template_id: String,
    /// `accept` or `reject` (as WeChat spells it).
    pub status: String,
}

/// One delivery result of a subscribe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDelivery {
    /// The template.
    pub template_id: String,
    /// WeChat's message id.
    pub msg_id: String,
    /// 0 when delivered.
    pub error_code: i64,
    /// `success`, or why not.
    pub error_status: String,
}

/// A pushed event.
#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    /// `wxa_media_check`: an asynchronous image or audio check's verdict.
    MediaCheck {
        /// The id `media_check_async` answered.
        trace_id: String,
        /// `pass`, `review` or `risky`.
        suggest: String,
        /// The label (100: normal).
        label: i64,
    },
    /// `subscribe_msg_popup_event`: the user answered the consent popup.
    SubscribePopup {
        /// The user.
        openid: String,
        /// Each template's answer.
        items: Vec<TemplateConsent>,
    },
    /// `subscribe_msg_change_event`: the user changed a template in the
    /// settings page.
    SubscribeChange {
        /// The user.
        openid: String,
        /// Each template's new state.
        items: Vec<TemplateConsent>,
    },
    /// `subscribe_msg_sent_event`: a subscribe message's delivery.
    SubscribeSent {
        /// The user.
        openid: String,
        /// Each delivery.
        items: Vec<TemplateDelivery>,
    },
    /// `user_authorization_revoke` (withdrew what they authorized) or
    /// `user_authorization_cancellation` (closed their WeChat account).
    AuthorizationRevoked {
        /// The user.
        openid: String,
        /// WeChat's `RevokeInfo` code(s), as sent.
        revoke_info: String,
        /// Whether the user closed their account (cancellation).
        account_closed: bool,
    },
    /// Anything else: its `MsgType` and `Event` (empty when absent).
    Other {
        /// `MsgType`.
        msg_type: String,
        /// `Event`.
        event: String,
    },
}

/// Why an event could not be read. Never holds the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {event} event lacks {field}")]
pub struct EventError {
    /// The event.
    pub event: String,
    /// The field missing or of the wrong kind.
    pub field: &'static str,
}

/// The event a push carries.
pub fn read_event(body: &Map<String, Value>) -> Result<PushEvent, EventError> {
    let event = text(body.get("Event")).unwrap_or_default();
    let missing = |field| EventError {
        event: event.clone(),
        field,
    };
    let openid = || {
        text(body.get("FromUserName"))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("FromUserName"))
    };
    Ok(match event.as_str() {
        "wxa_media_check" => {
            let result = body.get("result").and_then(Value::as_object);
            PushEvent::MediaCheck {
                trace_id: text(body.get("trace_id"))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("trace_id"))?,
                suggest: result
                    .and_then(|r| text(r.get("suggest")))
                    .ok_or_else(|| missing("result.suggest"))?,
                label: result
                    .and_then(|r| number(r.get("label")))
                    .ok_or_else(|| missing("result.label"))?,
            }
        }
        "subscribe_msg_popup_event" | "subscribe_msg_change_event" => {
            let outer = if event == "subscribe_msg_popup_event" {
                "SubscribeMsgPopupEvent"
            } else {
                "SubscribeMsgChangeEvent"
            };
            let items = list(body, outer)
                .iter()
                .map(|item| {
                    Ok(TemplateConsent {
                        template_id: text(item.get("TemplateId"))
                            .ok_or_else(|| missing("TemplateId"))?,
                        status: text(item.get("SubscribeStatusString"))
                            .ok_or_else(|| missing("SubscribeStatusString"))?,
                    })
                })
                .collect::<Result<Vec<_>, EventError>>()?;
            if event == "subscribe_msg_popup_event" {
                PushEvent::SubscribePopup {
                    openid: openid()?,
                    items,
                }
            } else {
                PushEvent::SubscribeChange {
                    openid: openid()?,
                    items,
                }
            }
        }
        "subscribe_msg_sent_event" => PushEvent::SubscribeSent {
            openid: openid()?,
            items: list(body, "SubscribeMsgSentEvent")
                .iter()
                .map(|item| {
                    Ok(TemplateDelivery {
                        template_id: text(item.get("TemplateId"))
                            .ok_or_else(|| missing("TemplateId"))?,
                        msg_id: text(item.get("MsgID")).unwrap_or_default(),
                        error_code: number(item.get("ErrorCode")).unwrap_or(-1),
                        error_status: text(item.get("ErrorStatus")).unwrap_or_default(),
                    })
                })
                .collect::<Result<Vec<_>, EventError>>()?,
        },
        "user_authorization_revoke" | "user_authorization_cancellation" => {
            PushEvent::AuthorizationRevoked {
                // The user is `OpenID`; `FromUserName` is the platform's
                // push account in these events.
                openid: text(body.get("OpenID"))
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| missing("OpenID"))?,
                revoke_info: text(body.get("RevokeInfo")).unwrap_or_default(),
                account_closed: event == "user_authorization_cancellation",
            }
        }
        _ => PushEvent::Other {
            msg_type: text(body.get("MsgType")).unwrap_or_default(),
            event,
        },
    })
}

/// A value as text: a string as is, a number written out.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A value as a number: a number, or a string holding one.
fn number(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A subscribe event's items: XML nests them as `<Outer><List>…</List>`,
/// JSON puts them under `List`; one item is an object, several an array.
fn list<'a>(body: &'a Map<String, Value>, outer: &str) -> Vec<&'a Map<String, Value>> {
    let found = body
        .get(outer)
        .and_then(|o| o.get("List"))
        .or_else(|| body.get("List"));
    match found {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_object).collect(),
        Some(Value::Object(item)) => vec![item],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push_body::parse_body;

    fn read(body: &str) -> PushEvent {
        read_event(&parse_body(body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn a_popup_reads_the_same_from_xml_and_both_json_shapes() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName>\
            <FromUserName><![CDATA[o-user]]></FromUserName><CreateTime>1610969440</CreateTime>\
            <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>\
            <SubscribeMsgPopupEvent><List><TemplateId><![CDATA[T1]]></TemplateId>\
            <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
            <List><TemplateId><![CDATA[T2]]></TemplateId>\
            <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
            </SubscribeMsgPopupEvent></xml>";
        let both = vec![
            TemplateConsent {
                template_id: "T1".into(),
                status: "accept".into(),
            },
            TemplateConsent {
                template_id: "T2".into(),
                status: "reject".into(),
            },
        ];
        assert_eq!(
            read(xml),
            PushEvent::SubscribePopup {
                openid: "o-user".into(),
                items: both.clone()
            }
        );
        let array = r#"{"FromUserName": "o-user", "CreateTime": "1620973045", "MsgType": "event",
            "Event": "subscribe_msg_popup_event", "List": [
              {"TemplateId": "T1", "SubscribeStatusString": "accept", "PopupScene": "0"},
              {"TemplateId": "T2", "SubscribeStatusString": "reject", "PopupScene": "0"}]}"#;
        assert_eq!(
            read(array),
            PushEvent::SubscribePopup {
                openid: "o-user".into(),
                items: both.clone()
            }
        );
        let one = r#"{"FromUserName": "o-user", "CreateTime": 1688953684, "MsgType": "event",
            "Event": "subscribe_msg_popup_event",
            "List": {"PopupScene": "0", "SubscribeStatusString": "accept", "TemplateId": "T1"}}"#;
        assert_eq!(
            read(one),
            PushEvent::SubscribePopup {
                openid: "o-user".into(),
                items: both[..1].to_vec()
            }
        );
    }

    #[test]
    fn media_checks_revokes_and_deliveries_are_read() {
        // A v2 push as observed (label a string), docs/wechat-platform.md §2b.
        let media = r#"{"ToUserName":"gh_7bf1f1389686","FromUserName":"or9bw69jaWwJlF-6u0z3qT3KmO2k",
            "CreateTime":1762329554,"MsgType":"event","Event":"wxa_media_check","appid":"wxb04d1be1ede56d47",
            "trace_id":"690b03d2-301f6111-35ffbd44","version":2,"result":{"suggest":"pass","label":"100"},
            "detail":[{"strategy":"content_model","errcode":0,"suggest":"pass","label":"100","prob":90}]}"#;
        assert_eq!(
            read(media),
            PushEvent::MediaCheck {
                trace_id: "690b03d2-301f6111-35ffbd44".into(),
                suggest: "pass".into(),
                label: 100
            }
        );
        let revoke = "<xml><ToUserName><![CDATA[gh_870882ca4b1]]></ToUserName>\
            <FromUserName><![CDATA[owAqB1v0ahK_Xlc7GshIDdf2yf7E]]></FromUserName>\
            <CreateTime>1626857200</CreateTime><MsgType><![CDATA[event]]></MsgType>\
            <Event><![CDATA[user_authorization_revoke]]></Event>\
            <OpenID><![CDATA[owAqB1nqaOYYWl0Ng484G2z5NIwU]]></OpenID>\
            <AppID><![CDATA[wx13974bf780d3dc89]]></AppID><RevokeInfo><![CDATA[1]]></RevokeInfo></xml>";
        assert_eq!(
            read(revoke),
            PushEvent::AuthorizationRevoked {
                openid: "owAqB1nqaOYYWl0Ng484G2z5NIwU".into(),
                revoke_info: "1".into(),
                account_closed: false
            }
        );
        let sent = r#"{"FromUserName": "o-user", "MsgType": "event", "Event": "subscribe_msg_sent_event",
            "List": {"TemplateId": "T1", "MsgID": "1700827132819554304", "ErrorCode": "0", "ErrorStatus": "success"}}"#;
        assert_eq!(
            read(sent),
            PushEvent::SubscribeSent {
                openid: "o-user".into(),
                items: vec![TemplateDelivery {
                    template_id: "T1".into(),
                    msg_id: "1700827132819554304".into(),
                    error_code: 0,
                    error_status: "success".into()
                }]
            }
        );
        assert_eq!(
            read(r#"{"MsgType": "text", "Content": "hi"}"#),
            PushEvent::Other {
                msg_type: "text".into(),
                event: String::new()
            }
        );
    }

    #[test]
    fn an_event_without_its_subject_is_refused() {
        let body = parse_body(br#"{"Event": "user_authorization_revoke", "AppID": "wx"}"#).unwrap();
        assert_eq!(
            read_event(&body),
            Err(EventError {
                event: "user_authorization_revoke".into(),
                field: "OpenID"
            })
        );
        let body = parse_body(br#"{"Event": "wxa_media_check", "trace_id": "t"}"#).unwrap();
        assert_eq!(read_event(&body).unwrap_err().field, "result.suggest");
    }
}
