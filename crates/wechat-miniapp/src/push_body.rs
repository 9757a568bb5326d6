//! The body of a push, JSON or XML, read into one shape (a JSON object)
//! so that each event is read once whatever format the app chose
//! (`docs/wechat-platform.md` §1c, §3b).
//!
//! XML: the root's child elements become fields; an element's text (or
//! CDATA) a string; an element with children an object; a name repeated
//! an array of them. No DTD, no entities beyond XML's five, at most
//! [`MAX_DEPTH`] levels: a push is small and flat, anything else is refused.

use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Value};

/// How deep a push's XML may nest.
pub const MAX_DEPTH: usize = 8;

/// Why a body could not be read. Never holds the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Neither a JSON object nor an XML document.
    #[error("the body is neither a JSON object nor an XML document")]
    NotJsonOrXml,
    /// Malformed JSON or XML (where, not what).
    #[error("the body is malformed {0}")]
    Malformed(String),
    /// A DTD, or nesting deeper than allowed.
    #[error("the body's XML holds a DTD or nests deeper than {MAX_DEPTH} levels")]
    Refused,
}

/// Reads a push's body.
pub fn parse_body(body: &[u8]) -> Result<Map<String, Value>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::Malformed("(not UTF-8)".into()))?;
    let trimmed = text.trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n']);
    match trimmed.as_bytes().first() {
        Some(b'{') => match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(BodyError::NotJsonOrXml),
            Err(e) => Err(BodyError::Malformed(format!(
                "(JSON, line {} column {})",
                e.line(),
                e.column()
            ))),
        },
        Some(b'<') => parse_xml(trimmed),
        _ => Err(BodyError::NotJsonOrXml),
    }
}

fn parse_xml(text: &str) -> Result<Map<String, Value>, BodyError> {
    let mut reader = Reader::from_str(text);
    let malformed = |at: u64| BodyError::Malformed(format!("(XML, at byte {at})"));
    // The open elements: their names and what they hold so far.
    let mut stack: Vec<(String, Map<String, Value>, String)> = Vec::new();
    let mut root: Option<Map<String, Value>> = None;
    loop {
        let at = reader.buffer_position();
        match reader.read_event().map_err(|_| malformed(at))? {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(BodyError::Refused);
                }
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                stack.push((name, Map::new(), String::new()));
            }
            Event::Empty(e) => {
                let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match stack.last_mut() {
                    Some((_, fields, _)) => add(fields, name, Value::String(String::new())),
                    None => root = Some(Map::new()),
                }
            }
            Event::Text(t) => {
                if let Some((_, _, text)) = stack.last_mut() {
                    let decoded = t.decode().map_err(|_| malformed(at))?;
                    let unescaped =
                        quick_xml::escape::unescape(&decoded).map_err(|_| malformed(at))?;
                    text.push_str(&unescaped);
                }
            }
            Event::GeneralRef(r) => {
                // XML's own five entities and character references only.
                let name = r.decode().map_err(|_| malformed(at))?;
                let resolved = match r.resolve_char_ref().map_err(|_| malformed(at))? {
                    Some(c) => c.to_string(),
                    None => quick_xml::escape::resolve_xml_entity(&name)
                        .ok_or(BodyError::Refused)?
                        .to_owned(),
                };
                if let Some((_, _, text)) = stack.last_mut() {
                    text.push_str(&resolved);
                }
            }
            Event::CData(c) => {
                if let Some((_, _, text)) = stack.last_mut() {
                    text.push_str(&String::from_utf8_lossy(&c.into_inner()));
                }
            }
            Event::End(_) => {
                let (name, fields, text) = stack.pop().ok_or_else(|| malformed(at))?;
                let value = if fields.is_empty() {
                    Value::String(text.trim().to_owned())
                } else {
                    Value::Object(fields)
                };
                match stack.last_mut() {
                    Some((_, parent, _)) => add(parent, name, value),
                    None => {
                        root = Some(match value {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        })
                    }
                }
            }
            Event::DocType(_) => return Err(BodyError::Refused),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed(text.len() as u64));
    }
    root.ok_or(BodyError::NotJsonOrXml)
}

/// Adds a field; a name seen before makes an array.
fn add(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        Some(Value::Array(items)) => items.push(value),
        Some(first) => {
            let first = first.take();
            fields.insert(name, Value::Array(vec![first, value]));
        }
        None => {
            fields.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_xml_read_the_same() {
        let xml = br#"<xml>
            <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
            <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>
            <CreateTime>1610969440</CreateTime>
            <MsgType><![CDATA[event]]></MsgType>
            <Event><![CDATA[subscribe_msg_popup_event]]></Event>
            <SubscribeMsgPopupEvent>
                <List>
                    <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
                    <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
                    <PopupScene>2</PopupScene>
                </List>
                <List>
                    <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>
                    <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>
                    <PopupScene>2</PopupScene>
                </List>
            </SubscribeMsgPopupEvent>
        </xml>"#;
        let read = parse_body(xml).unwrap();
        assert_eq!(read["CreateTime"], "1610969440");
        assert_eq!(read["Event"], "subscribe_msg_popup_event");
        let list = &read["SubscribeMsgPopupEvent"]["List"];
        assert_eq!(list[0]["SubscribeStatusString"], "accept");
        assert_eq!(
            list[1]["TemplateId"],
            "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI"
        );
        let json = br#"{"ToUserName": "gh_1", "CreateTime": 1688953684, "Event": "subscribe_msg_popup_event",
            "List": {"PopupScene": "0", "SubscribeStatusString": "accept", "TemplateId": "T"}}"#;
        let read = parse_body(json).unwrap();
        assert_eq!(read["List"]["TemplateId"], "T");
    }

    #[test]
    fn entities_and_escapes_are_read() {
        let read = parse_body(b"<xml><A>a &amp; b &#x4e2d;</A><B/></xml>").unwrap();
        assert_eq!(read["A"], "a & b \u{4e2d}");
        assert_eq!(read["B"], "");
    }

    #[test]
    fn what_is_not_a_push_is_refused() {
        for (body, want) in [
            (&b""[..], BodyError::NotJsonOrXml),
            (b"success", BodyError::NotJsonOrXml),
            (b"[1, 2]", BodyError::NotJsonOrXml),
            (
                b"<!DOCTYPE x [<!ENTITY e \"boom\">]><xml><A>&e;</A></xml>",
                BodyError::Refused,
            ),
            (b"<xml><A>&e;</A></xml>", BodyError::Refused),
            (
                b"<a><b><c><d><e><f><g><h><i>deep</i></h></g></f></e></d></c></b></a>",
                BodyError::Refused,
            ),
        ] {
            assert_eq!(
                parse_body(body),
                Err(want),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(matches!(
            parse_body(b"{\"a\": "),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_body(b"<xml><A>x</B></xml>"),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_body(b"<xml><A>x</A>"),
            Err(BodyError::Malformed(_))
        ));
        assert_eq!(
            parse_body(br#"{"a": 1}"#).unwrap(),
            json!({"a": 1}).as_object().unwrap().clone()
        );
    }
}
