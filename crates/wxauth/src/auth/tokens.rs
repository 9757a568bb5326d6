//! Session tokens.
//!
//! - Access tokens: JWTs signed HS256 with a `kid` header, so keys rotate
//!   (the first configured key signs; all verify). The algorithm is pinned:
//!   a token with any other `alg` is refused before its signature is looked
//!   at. Claims: `sub` (user id), `sid` (session id, checked against
//!   revocation), `app` (appid), `iat`, `exp`. Expiry is checked against the
//!   service's clock, so tests can move time.
//! - Refresh tokens: `wxr_` + 32 random bytes (base64url); only their
//!   SHA-256 is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wechat_miniapp::Clock;

use crate::config::NamedKey;
use crate::error::{Error, Result};

const ISSUER: &str = "wxauth";
const REFRESH_PREFIX: &str = "wxr_";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// The appid.
    pub app: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Always `wxauth`.
    pub iss: String,
}

/// Signs and verifies access tokens; makes refresh tokens.
pub struct TokenIssuer {
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    access_ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("signing_kid", &self.signing_kid)
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

/// A refresh token: the text the client keeps and the hash the store keeps.
pub struct RefreshToken {
    /// Give this to the client, once.
    pub token: wechat_miniapp::SecretText,
    /// Store this.
    pub hash: Vec<u8>,
}

impl TokenIssuer {
    /// Keys in configuration order (the first signs).
    pub fn new(keys: &[NamedKey], access_ttl: Duration, clock: Arc<dyn Clock>) -> Result<Self> {
        let first = keys
            .first()
            .ok_or_else(|| Error::internal("no signing key"))?;
        Ok(Self {
            signing_kid: first.id.clone(),
            encoding: EncodingKey::from_secret(&first.bytes),
            decoding: keys
                .iter()
                .map(|k| (k.id.clone(), DecodingKey::from_secret(&k.bytes)))
                .collect(),
            access_ttl,
            clock,
        })
    }

    /// Access token lifetime in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl.as_secs()
    }

    /// A signed access token for this session.
    pub fn issue_access(&self, user_id: &str, session_id: &str, appid: &str) -> Result<String> {
        let now = self.clock.now_ms() / 1000;
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            sid: session_id.to_owned(),
            app: appid.to_owned(),
            iat: now,
            exp: now + i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX / 2),
            iss: ISSUER.to_owned(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.signing_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(Error::internal)
    }

    /// Checks signature, algorithm, issuer and expiry. Every failure is the
    /// same `Unauthorized` to the caller; the reason is not disclosed.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims> {
        let unauthorized = || Error::Unauthorized("the access token is invalid or expired");
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized())?;
        if header.alg != Algorithm::HS256 {
            return Err(unauthorized());
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or_else(unauthorized)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        // Expiry is checked below against our clock, not the library's.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "sub"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| unauthorized())?;
        if data.claims.exp <= self.clock.now_ms() / 1000 {
            return Err(unauthorized());
        }
        Ok(data.claims)
    }

    /// A new random refresh token.
    pub fn new_refresh(&self) -> RefreshToken {
        let bytes: [u8; 32] = rand::rng().random();
        let token = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = refresh_hash(&token);
        RefreshToken {
            token: token.into(),
            hash,
        }
    }
}

/// The stored form of a refresh token.
pub fn refresh_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Whether a string is shaped like one of our refresh tokens (so garbage is
/// refused without a database round trip).
pub fn looks_like_refresh(token: &str) -> bool {
    token.strip_prefix(REFRESH_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wechat_miniapp::OffsetClock;

    fn key(id: &str, b: u8) -> NamedKey {
        NamedKey {
            id: id.into(),
            bytes: vec![b; 32],
        }
    }

    fn issuer(keys: &[NamedKey], clock: &OffsetClock) -> TokenIssuer {
        TokenIssuer::new(keys, Duration::from_secs(60), Arc::new(clock.clone())).unwrap()
    }

    #[test]
    fn issue_verify_expire() {
        let clock = OffsetClock::new();
        let t = issuer(&[key("k1", 1)], &clock);
        let token = t.issue_access("u1", "s1", "wxa").unwrap();
        let claims = t.verify_access(&token).unwrap();
        assert_eq!(
            (
                claims.sub.as_str(),
                claims.sid.as_str(),
                claims.app.as_str()
            ),
            ("u1", "s1", "wxa")
        );
        assert_eq!(claims.exp - claims.iat, 60);
        clock.advance(Duration::from_secs(61));
        assert!(t.verify_access(&token).is_err());
    }

    #[test]
    fn tampering_other_keys_and_algorithms_are_refused() {
        let clock = OffsetClock::new();
        let t = issuer(&[key("k1", 1)], &clock);
        let token = t.issue_access("u1", "s1", "wxa").unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        // Change the payload (sub u1 → u2) keeping the signature.
        let payload = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let forged = String::from_utf8(payload)
            .unwrap()
            .replace("\"u1\"", "\"u2\"");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged),
            parts[2]
        );
        assert!(t.verify_access(&forged).is_err());
        // alg none.
        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        assert!(
            t.verify_access(&format!("{none_header}.{}.", parts[1]))
                .is_err()
        );
        // Signed by a key we do not have, or no kid at all.
        let other = issuer(&[key("k1", 2)], &clock);
        assert!(
            t.verify_access(&other.issue_access("u1", "s1", "wxa").unwrap())
                .is_err()
        );
        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &t.verify_access(&token).unwrap(),
            &EncodingKey::from_secret(&[1; 32]),
        )
        .unwrap();
        assert!(t.verify_access(&no_kid).is_err());
        assert!(t.verify_access("").is_err());
        assert!(t.verify_access("a.b.c").is_err());
    }

    #[test]
    fn key_rotation() {
        let clock = OffsetClock::new();
        let old = issuer(&[key("k1", 1)], &clock);
        let token = old.issue_access("u1", "s1", "wxa").unwrap();
        let rotated = issuer(&[key("k2", 2), key("k1", 1)], &clock);
        assert!(rotated.verify_access(&token).is_ok());
        let new_token = rotated.issue_access("u1", "s1", "wxa").unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token)
                .unwrap()
                .kid
                .as_deref(),
            Some("k2")
        );
        assert!(old.verify_access(&new_token).is_err());
    }

    #[test]
    fn refresh_tokens() {
        let clock = OffsetClock::new();
        let t = issuer(&[key("k1", 1)], &clock);
        let a = t.new_refresh();
        let b = t.new_refresh();
        assert_ne!(a.token.expose(), b.token.expose());
        assert!(looks_like_refresh(a.token.expose()));
        assert_eq!(a.hash, refresh_hash(a.token.expose()));
        assert_eq!(a.hash.len(), 32);
        assert!(!looks_like_refresh("wxr_short"));
        assert!(!looks_like_refresh(
            &a.token.expose().replace("wxr_", "xxx_")
        ));
    }
}
