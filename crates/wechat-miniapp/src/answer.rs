//! Reading WeChat's answers the way WeChat actually sends them.
//!
//! - The body is JSON whatever the `Content-Type` says (`text/plain` is common).
//! - Errors come with HTTP 200 and `{"errcode": N, "errmsg": "..."}`.
//! - A missing `errcode` means success; `errcode` may be a number or a string.
//! - Only `errcode` decides; `errmsg` wording changes over time.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// Parses a WeChat answer body into `T`, or into the error its errcode names.
pub fn parse_answer<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Error::MalformedAnswer(format!(
            "not JSON ({e}); {} bytes starting {:?}",
            body.len(),
            String::from_utf8_lossy(&body[..body.len().min(64)])
        ))
    })?;
    let Value::Object(map) = &value else {
        return Err(Error::MalformedAnswer("JSON that is not an object".into()));
    };
    let errcode = match map.get("errcode") {
        None | Some(Value::Null) => 0,
        Some(v) => errcode_of(v).ok_or_else(|| {
            Error::MalformedAnswer(format!(
                "errcode is neither a number nor a numeric string: {v}"
            ))
        })?,
    };
    if errcode != 0 {
        let errmsg = map.get("errmsg").and_then(Value::as_str).unwrap_or("");
        return Err(Error::from_errcode(errcode, errmsg));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::MalformedAnswer(format!("unexpected fields in a success answer: {e}")))
}

fn errcode_of(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Session {
        openid: String,
        #[serde(default)]
        unionid: Option<String>,
    }

    fn parse(body: &str) -> Result<Session> {
        parse_answer(body.as_bytes())
    }

    #[test]
    fn success_without_errcode() {
        let s = parse(
            r#"{"session_key":"5tF5KuDigyB6e4m7FigHvw==","openid":"orWy35UBNFZyReiUYVZvtPrqht-0"}"#,
        );
        let s = s.map_err(|e| e.to_string());
        assert_eq!(
            s.as_ref().map(|s| s.openid.as_str()),
            Ok("orWy35UBNFZyReiUYVZvtPrqht-0")
        );
        assert_eq!(s.map(|s| s.unionid), Ok(None));
    }

    #[test]
    fn success_with_errcode_zero_number_or_string() {
        assert!(parse(r#"{"openid":"o1","errcode":0,"errmsg":"ok"}"#).is_ok());
        assert!(parse(r#"{"openid":"o1","errcode":"0","errmsg":"ok"}"#).is_ok());
        assert!(parse(r#"{"openid":"o1","errcode":null}"#).is_ok());
    }

    #[test]
    fn errcode_as_number_or_string() {
        assert!(matches!(
            parse(r#"{"errcode":40029,"errmsg":"invalid code, rid: 1-2-3"}"#),
            Err(Error::InvalidCode { errcode: 40029 })
        ));
        assert!(matches!(
            parse(r#"{"errcode":"40029","errmsg":"invalid code"}"#),
            Err(Error::InvalidCode { errcode: 40029 })
        ));
    }

    #[test]
    fn errmsg_does_not_matter() {
        assert!(matches!(
            parse(r#"{"errcode":40163,"errmsg":"something new entirely"}"#),
            Err(Error::CodeUsed { after_retry: false })
        ));
        assert!(matches!(parse(r#"{"errcode":-1}"#), Err(Error::Busy)));
        assert!(matches!(
            parse(r#"{"errcode":12345,"errmsg":"new"}"#),
            Err(Error::Other { errcode: 12345, .. })
        ));
    }

    #[test]
    fn escaped_slashes_and_unknown_fields_are_fine() {
        let r = parse(
            r#"{"errcode":40125,"errmsg":"invalid appsecret, view more at http:\/\/t.cn\/RAEkdVq"}"#,
        );
        match r {
            Err(Error::AppMisconfigured {
                errcode: 40125,
                errmsg,
            }) => assert!(errmsg.contains("http://t.cn")),
            other => panic!("{other:?}"),
        }
        assert!(parse(r#"{"openid":"o1","expires_in":7200,"anything":[1]}"#).is_ok());
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_answer::<Session>(&body);
            }

            #[test]
            fn any_nonzero_errcode_is_an_error(code in any::<i64>().prop_filter("nonzero", |c| *c != 0),
                                               as_string in any::<bool>()) {
                let body = if as_string {
                    format!(r#"{{"errcode":"{code}","errmsg":"x","openid":"o"}}"#)
                } else {
                    format!(r#"{{"errcode":{code},"errmsg":"x","openid":"o"}}"#)
                };
                let err = parse_answer::<Session>(body.as_bytes());
                prop_assert!(err.is_err());
                prop_assert_eq!(err.err().and_then(|e| e.errcode()), Some(code));
            }
        }
    }

    #[test]
    fn malformed_bodies() {
        assert!(matches!(parse(""), Err(Error::MalformedAnswer(_))));
        assert!(matches!(parse("<html>"), Err(Error::MalformedAnswer(_))));
        assert!(matches!(parse("[1]"), Err(Error::MalformedAnswer(_))));
        assert!(matches!(
            parse(r#"{"errcode":true}"#),
            Err(Error::MalformedAnswer(_))
        ));
        assert!(matches!(
            parse(r#"{"errcode":0}"#),
            Err(Error::MalformedAnswer(_))
        ));
    }
}
