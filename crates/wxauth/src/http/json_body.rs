//! Parsing a JSON request body into a request type, with errors that name
//! the offending field's path (`code`, `profile.nickname`) and never echo a
//! value the client sent (a login code once came back inside serde's
//! "invalid type: string \"…\"" text).
//!
//! The body is parsed to a `serde_json::Value` first (syntax errors,
//! nesting depth), then deserialized from that value with
//! `serde_path_to_error` tracking where a type error happened. Messages are
//! rebuilt from the error's kind and the path; serde's own text, which
//! quotes the value, is never passed through.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::Error;

/// Parses `bytes` as JSON nested at most `max_depth` arrays/objects deep and
/// deserializes `T` from it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, Error> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| syntax_error(&e, max_depth))?;
    let depth = nesting_depth(&value);
    if depth > max_depth {
        return Err(too_deep(max_depth));
    }
    // Every body of the API is an object; serde would otherwise read a
    // struct from an array of its fields in order (`[{}]` as a profile
    // patch).
    if value.is_array() {
        return Err(Error::InvalidRequest(
            "the body must be a JSON object, not an array".into(),
        ));
    }
    from_value(&value)
}

/// Deserializes `T` from an already parsed value, naming the failing path.
pub fn from_value<T: DeserializeOwned>(value: &Value) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Error::InvalidRequest(data_error_message(&path, &e.inner().to_string()))
    })
}

fn too_deep(max_depth: usize) -> Error {
    Error::InvalidRequest(format!(
        "the JSON body is nested more than {max_depth} levels deep (limits.json_depth)"
    ))
}

/// How many arrays/objects deep `value` goes (a scalar is 0, `{}` is 1).
pub fn nesting_depth(value: &Value) -> usize {
    // Iterative: the value is at most 128 deep (serde_json's own limit),
    // but a walk without recursion costs nothing extra.
    let mut deepest = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 0)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|i| (i, depth + 1)));
            }
            _ => deepest = deepest.max(depth),
        }
    }
    deepest
}

/// A syntax error: where, never what (serde_json's syntax messages quote no
/// input, but say it in our words anyway).
fn syntax_error(e: &serde_json::Error, max_depth: usize) -> Error {
    let text = e.to_string();
    if text.starts_with("recursion limit exceeded") {
        return too_deep(max_depth);
    }
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the JSON body ends too early",
        _ => "the body is not valid JSON",
    };
    // serde_json's syntax messages are fixed phrases ("expected value",
    // "trailing characters", "invalid escape"): keep the phrase.
    let phrase = text.split(" at line ").next().unwrap_or("");
    Error::InvalidRequest(format!(
        "{what} ({phrase}) at line {} column {}",
        e.line(),
        e.column()
    ))
}

/// The JSON type serde names at the start of an "invalid type" message.
fn found_type(unexpected: &str) -> &'static str {
    let first = unexpected
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    match first {
        "integer" | "floating" => "a number",
        "string" | "char" => "a string",
        "boolean" => "a boolean",
        "null" | "unit" => "null",
        "map" => "an object",
        "sequence" => "an array",
        _ => "another kind of value",
    }
}

/// serde's "expected" phrase in the API's words (`struct LoginRequest` is
/// "a JSON object" to a client).
fn expected_phrase(expected: &str) -> String {
    let expected = expected.trim();
    if expected.starts_with("struct ") || expected == "a map" {
        "a JSON object".to_owned()
    } else if expected.starts_with("a sequence") {
        "an array".to_owned()
    } else if expected == "any valid JSON value" {
        "JSON".to_owned()
    } else {
        expected.to_owned()
    }
}

fn field_name(path: &str) -> String {
    if path == "." || path.is_empty() {
        "the body".to_owned()
    } else {
        format!("`{}`", truncate(path, 80))
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}

/// The message for a type/shape error at `path`, rebuilt from serde's
/// message without the value it quotes.
fn data_error_message(path: &str, serde_message: &str) -> String {
    let at = field_name(path);
    if let Some(rest) = serde_message
        .strip_prefix("invalid type: ")
        .or_else(|| serde_message.strip_prefix("invalid value: "))
    {
        let expected = rest
            .rsplit_once(", expected ")
            .map_or("another value".to_owned(), |(_, e)| expected_phrase(e));
        let found = found_type(rest);
        return if serde_message.starts_with("invalid type") {
            format!("{at} must be {expected}, not {found}")
        } else {
            format!("{at} has a value that is not allowed; expected {expected}")
        };
    }
    if let Some(rest) = serde_message.strip_prefix("invalid length ") {
        let expected = rest
            .rsplit_once(", expected ")
            .map_or("another length".to_owned(), |(_, e)| e.to_owned());
        return format!("{at} has the wrong length; expected {expected}");
    }
    if let Some(rest) = serde_message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        let full = if path == "." || path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        return format!("`{}` is required", truncate(&full, 80));
    }
    if let Some(rest) = serde_message.strip_prefix("unknown field `") {
        // The path already ends in the unknown key; the allowed names follow.
        let allowed = rest
            .split_once("`, expected ")
            .map(|(_, a)| a.replace("one of ", ""))
            .map_or(String::new(), |a| format!(" (allowed: {a})"));
        return format!("{at} is not a known field{allowed}");
    }
    if serde_message.starts_with("duplicate field `") {
        return format!("{at} appears twice");
    }
    // Anything else: name the place, not serde's text.
    format!("{at} is not valid here")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        code: String,
        #[serde(default)]
        appid: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        profile: Inner,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        nickname: String,
    }

    fn message<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        match parse::<T>(body.as_bytes(), 32) {
            Err(Error::InvalidRequest(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_types_name_the_field_and_never_the_value() {
        let cases = [
            (r#"{"code": 5}"#, "`code` must be a string, not a number"),
            (r#"{"code": null}"#, "`code` must be a string, not null"),
            (r#"{"code": [1]}"#, "`code` must be a string, not an array"),
            (r#"{"code": {}}"#, "`code` must be a string, not an object"),
            (
                r#"{"code": true}"#,
                "`code` must be a string, not a boolean",
            ),
            (
                r#"{"code": "x", "appid": 7}"#,
                "`appid` must be a string, not a number",
            ),
            (r#"{}"#, "`code` is required"),
            (
                r#""SECRETCODE123""#,
                "the body must be a JSON object, not a string",
            ),
            (
                r#"["SECRETCODE123"]"#,
                "the body must be a JSON object, not an array",
            ),
        ];
        for (body, want) in cases {
            let got = message::<Login>(body);
            assert_eq!(got, want, "{body}");
        }
        let got = message::<Login>(r#"{"code": "x", "openid": "o1"}"#);
        assert!(got.starts_with("`openid` is not a known field"), "{got}");
        let got = message::<Nested>(r#"{"profile": {"nickname": 5}}"#);
        assert_eq!(got, "`profile.nickname` must be a string, not a number");
        let got = message::<Nested>(r#"{"profile": {}}"#);
        assert_eq!(got, "`profile.nickname` is required");
    }

    #[test]
    fn syntax_errors_say_where() {
        let got = message::<Login>(r#"{"code": "abc"#);
        assert!(got.contains("line 1"), "{got}");
        assert!(!got.contains("abc"), "{got}");
        let got = message::<Login>("{nope}");
        assert!(got.starts_with("the body is not valid JSON"), "{got}");
    }

    #[test]
    fn depth_is_limited_below_serde_json_s_own_limit() {
        // An object (a body is one) holding arrays: n levels in all.
        let deep = |n: usize| format!("{{\"a\":{}{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse::<Value>(deep(32).as_bytes(), 32).is_ok());
        for n in [33, 127, 200] {
            let got = message::<Value>(&deep(n));
            assert!(got.contains("more than 32 levels"), "{n}: {got}");
        }
        assert_eq!(nesting_depth(&serde_json::json!(1)), 0);
        assert_eq!(nesting_depth(&serde_json::json!({"a": [1, {"b": {}}]})), 4);
    }
}
