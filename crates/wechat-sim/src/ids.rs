//! Identifiers shaped like WeChat's (shared/wechat-api.md §7), so code that
//! validates or stores them meets realistic values offline.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use rand::distr::Alphanumeric;
use sha2::{Digest, Sha256};

/// A `wx.login` code: 32 characters of `[0-9A-Za-z]`.
pub fn login_code() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A phone-button code: 64 lowercase hex characters.
pub fn phone_code() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// A session_key: base64 of 16 random bytes (24 characters ending `==`).
pub fn session_key() -> String {
    STANDARD.encode(rand::rng().random::<[u8; 16]>())
}

/// An access token: a two-digit prefix and `_`, then `[A-Za-z0-9_-]`; 139
/// characters in all, inside the 136–157 range seen in the wild.
pub fn access_token() -> String {
    let mut rng = rand::rng();
    let body: String = (0..136)
        .map(|_| {
            const CHARS: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
            char::from(CHARS[rng.random_range(0..CHARS.len())])
        })
        .collect();
    format!("{}_{body}", rng.random_range(70..100))
}

/// A content check's trace id: WeChat's look (`6470a3b2-…`, hex groups).
pub fn trace_id() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h = hex::encode(b);
    format!("{}-{}-{}", &h[0..8], &h[8..16], &h[16..32])
}

/// A WeChat-style request id: three groups of 8 hex digits.
pub fn rid() -> String {
    let b: [u8; 12] = rand::rng().random();
    let h = hex::encode(b);
    format!("{}-{}-{}", &h[0..8], &h[8..16], &h[16..24])
}

/// A 28-character id starting with `o`, derived from `parts` so it is stable
/// across restarts of the simulator.
fn derived_id(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let encoded = URL_SAFE_NO_PAD.encode(hasher.finalize());
    format!("o{}", &encoded[..27])
}

/// The user's openid: stable per (appid, user).
pub fn openid(appid: &str, user: &str) -> String {
    derived_id(&["wechat-sim openid", appid, user])
}

/// The user's unionid: stable per user across all of the simulator's apps.
pub fn unionid(user: &str) -> String {
    derived_id(&["wechat-sim unionid", user])
}

/// A default phone number for a user: a mainland mobile number derived from
/// the name, so each test user has their own.
pub fn default_phone(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let n = u64::from_be_bytes([
        0, 0, 0, digest[0], digest[1], digest[2], digest[3], digest[4],
    ]) % 1_000_000_000;
    format!("13{n:09}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let c = login_code();
        assert_eq!(c.len(), 32);
        assert!(c.chars().all(|c| c.is_ascii_alphanumeric()));
        let p = phone_code();
        assert_eq!(p.len(), 64);
        assert!(
            p.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let k = session_key();
        assert_eq!(k.len(), 24);
        assert!(k.ends_with("=="));
        let t = access_token();
        assert_eq!(t.len(), 139);
        assert_eq!(&t[2..3], "_");
        let o = openid("wx1", "alice");
        assert_eq!(o.len(), 28);
        assert!(o.starts_with('o'));
        assert_eq!(o, openid("wx1", "alice"));
        assert_ne!(o, openid("wx2", "alice"));
        assert_eq!(unionid("alice").len(), 28);
        assert_eq!(default_phone("alice").len(), 11);
        assert_eq!(rid().len(), 26);
    }
}
