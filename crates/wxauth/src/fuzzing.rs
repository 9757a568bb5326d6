//! Entry points for the fuzz targets under `fuzz/` and for the regression
//! test that replays every input they ever crashed on
//! (`fuzz/regressions/<target>/`, run by `cargo test`).
//!
//! Each function takes raw bytes, drives one parser that faces untrusted
//! input, and panics only when an invariant breaks (a panic inside the
//! parser is the other finding). Not an API: hidden from the docs.

#![allow(clippy::panic)] // an invariant that breaks is the finding

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use wechat_miniapp::{SessionKey, SystemClock};

use crate::auth::tokens::TokenIssuer;
use crate::config::{SigningAlg, SigningKey};

const FUZZ_APPID: &str = "wx1111111111111111";

fn issuer() -> &'static TokenIssuer {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        let keys = [SigningKey {
            id: "fuzz".into(),
            alg: SigningAlg::Hs256,
            bytes: vec![7; 32],
        }];
        match TokenIssuer::new(
            &keys,
            "wxauth",
            Duration::from_secs(900),
            Arc::new(SystemClock),
        ) {
            Ok(issuer) => issuer,
            Err(e) => panic!("a fixed key always makes an issuer: {e}"),
        }
    })
}

/// Access-token verification. The input is a token as a client sends it;
/// or, after a leading `{`, claims that are signed with the real key
/// first, so the claim checks behind the signature are reached too.
pub fn verify_access_token(data: &[u8]) {
    let issuer = issuer();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.starts_with('{') {
        let Ok(claims) = serde_json::from_str::<Value>(text) else {
            return;
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("fuzz".into());
        let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
        let Ok(token) = jsonwebtoken::encode(&header, &claims, &key) else {
            return;
        };
        if let Ok(verified) = issuer.verify_access(&token) {
            // Accepted claims are exactly what was signed.
            assert_eq!(claims["sub"].as_str(), Some(verified.sub.as_str()));
            assert_eq!(claims["iss"].as_str(), Some("wxauth"));
        }
        return;
    }
    if let Ok(claims) = issuer.verify_access(text) {
        // Without the key nothing verifies, unless the input is a token
        // that really was signed with it.
        let fresh = issuer
            .issue_access(&claims.sub, &claims.sid, &claims.app)
            .unwrap_or_default();
        assert!(!fresh.is_empty());
    }
}

/// JSON bodies into every request type: see `http::parse_each_request_body`.
pub fn parse_request_bodies(data: &[u8]) {
    crate::http::parse_each_request_body(data);
}

/// A list's query string parts: a cursor is refused or decodes to one key
/// per sort key and a document id; `where` and `order_by` are refused
/// (never a panic) or parsed within their bounds.
pub fn decode_cursor(data: &[u8]) {
    use crate::data::query;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let order = query::parse_order_by(Some("score,-created_at")).unwrap_or_default();
    let fp = query::fingerprint("notes", &serde_json::Value::Null, &order);
    if let Ok(after) = query::decode_cursor(text, &fp, &order) {
        assert!(
            uuid::Uuid::parse_str(&after.id).is_ok(),
            "a cursor decodes to an id"
        );
        assert_eq!(after.keys.len(), order.len(), "one value per sort key");
    }
    let _ = query::parse_where(Some(text), "me");
    if let Ok(keys) = query::parse_order_by(Some(text)) {
        // The keys named, and created_at as the tie-break unless named.
        assert!(keys.len() <= query::MAX_SORT_KEYS + 1);
        assert!(
            keys.iter()
                .any(|k| k.field == crate::store::Field::CreatedAt)
        );
    }
}

/// `If-Match`: `*`, versions, or a 400.
pub fn parse_if_match(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(crate::data::documents::IfMatch::Versions(v)) =
        crate::data::documents::parse_if_match(text)
    {
        assert!(!v.is_empty(), "a list of tags is never empty");
    }
}

/// `encryptedData` decryption with a user's session_key. A first byte of 0
/// splits the rest at the first 0xff into `encrypted_data` and `iv` text
/// (the base64 and padding paths); otherwise the rest is a plaintext,
/// encrypted as WeChat does and decrypted back (the JSON and watermark
/// checks), which must give back exactly what went in.
pub fn decrypt_encrypted_data(data: &[u8]) {
    let key = SessionKey::new(STANDARD.encode([9u8; 16]));
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
        let (ciphertext, iv) = rest.split_at(split);
        let iv = iv.get(1..).unwrap_or_default();
        let (Ok(ciphertext), Ok(iv)) = (std::str::from_utf8(ciphertext), std::str::from_utf8(iv))
        else {
            return;
        };
        let _ = wechat_miniapp::crypto::decrypt_verified(&key, ciphertext, iv, FUZZ_APPID);
        return;
    }
    let iv = [mode; 16];
    let Ok(ciphertext) = wechat_miniapp::crypto::encrypt(&key, &iv, rest) else {
        return;
    };
    let iv = STANDARD.encode(iv);
    match wechat_miniapp::crypto::decrypt(&key, &ciphertext, &iv) {
        Ok(plain) => assert_eq!(plain, rest, "decrypt(encrypt(x)) == x"),
        Err(e) => panic!("what encrypt made must decrypt: {e:?}"),
    }
    if let Ok(value) = wechat_miniapp::crypto::decrypt_verified(&key, &ciphertext, &iv, FUZZ_APPID)
    {
        assert_eq!(value["watermark"]["appid"], FUZZ_APPID);
    }
}

/// The gateway's path check. The first byte picks a prefix, the rest is
/// the request path. Invariant: a path that is forwarded lies under the
/// prefix both as the URL parser left it and as a lenient server would
/// read it (percent-decoded up to three times, `\` as `/`, `;` parameters
/// dropped, dot segments resolved).
pub fn gateway_path(data: &[u8]) {
    const PREFIXES: &[&str] = &["/api/", "/pub/", "/a.b/", "/x-y/z/"];
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let prefix = PREFIXES[usize::from(pick) % PREFIXES.len()];
    let Ok(path) = std::str::from_utf8(rest) else {
        return;
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let Ok(url) = crate::gateway::path::forwarded_url("http://127.0.0.1:3000", prefix, path, query)
    else {
        return;
    };
    assert!(
        crate::gateway::path::under_prefix(url.path(), prefix),
        "{path:?} was forwarded as {:?}, outside {prefix}",
        url.path()
    );
    let lenient = resolve_like_a_lenient_server(url.path());
    assert!(
        crate::gateway::path::under_prefix(&lenient, prefix),
        "{path:?} was forwarded as {:?}, which a lenient server reads as {lenient:?}, outside {prefix}",
        url.path()
    );
}

/// How the most lenient servers read a path: decoded (three rounds), `\`
/// as `/`, path parameters dropped, dot segments resolved.
fn resolve_like_a_lenient_server(path: &str) -> String {
    let mut text = path.to_owned();
    for _ in 0..3 {
        text = percent_decode_lossy(&text);
    }
    let text = text.replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = text.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, segment) in segments.iter().enumerate() {
        let name = segment.split(';').next().unwrap_or("");
        match name {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            _ => out.push(name),
        }
    }
    out.join("/")
}

fn percent_decode_lossy(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes.get(i), bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'%'), Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(v).unwrap_or(0));
                i += 3;
            }
            (Some(&b), _, _) => {
                out.push(b);
                i += 1;
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
