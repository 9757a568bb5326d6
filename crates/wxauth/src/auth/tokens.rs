//! Session tokens.
//!
//! - Access tokens: JWTs with a `kid` header, so keys rotate (the first
//!   configured key signs; all verify). Signed with Ed25519 (`EdDSA`) by
//!   default, so the developer's services verify them with the public keys
//!   at `/.well-known/jwks.json` and hold no secret; HS256 stays available
//!   for deployments that configured a shared secret. Each key verifies
//!   only its own algorithm: the header's `alg` must be the `kid`'s, so a
//!   token "signed" with a public key as an HMAC secret, or `alg: none`, is
//!   refused before any signature is looked at. Claims: `sub` (user id),
//!   `sid` (session id, checked against revocation), `app` (appid), `iat`,
//!   `exp`, `iss`. Expiry is checked against the service's clock, so tests
//!   can move time.
//! - Refresh tokens: `wxr_` + base64url of the issue time (milliseconds, 6
//!   bytes, big-endian) and 32 random bytes. The store keeps their key: the
//!   time bytes, then the SHA-256 of the whole token. Keys made one after
//!   another sort one after another, so a login adds its refresh token at
//!   the end of the index (on SQLite, the pages of a batch of logins are
//!   then a few shared ones instead of one random page each: fewer pages
//!   written and synced per commit). Tokens of the first format (`wxr_` + 32
//!   random bytes, keyed by their SHA-256 alone) are still accepted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wechat_miniapp::Clock;

use crate::config::{SigningAlg, SigningKey};
use crate::error::{Error, Result};

const REFRESH_PREFIX: &str = "wxr_";
/// Bytes of issue time that start a refresh token and its stored key.
const REFRESH_TIME_BYTES: usize = 6;
/// Base64url characters after the prefix: the time bytes and 32 random ones.
const REFRESH_CHARS: usize = 51;
/// The same, in the first format (32 random bytes, no time).
const FIRST_FORMAT_REFRESH_CHARS: usize = 43;

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
    /// The issuer (`tokens.issuer`, `wxauth` by default).
    pub iss: String,
}

/// Signs and verifies access tokens; makes refresh tokens.
pub struct TokenIssuer {
    signing_kid: String,
    signing_alg: Algorithm,
    signer: Signer,
    verifying: HashMap<String, (Algorithm, DecodingKey)>,
    jwks: Vec<Value>,
    issuer: String,
    access_ttl: Duration,
    clock: Arc<dyn Clock>,
    /// Tokens whose signature was checked, by their exact text. An Ed25519
    /// verification costs ~50 µs, and a client sends one token with every
    /// request for 15 minutes: each is checked once per instance. Expiry
    /// (and revocation, by the caller) are still checked every time.
    verified: std::sync::Mutex<HashMap<String, AccessClaims>>,
}

/// Verified tokens remembered at most (then the memory starts over).
const VERIFIED_CACHE: usize = 4096;

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("signing_kid", &self.signing_kid)
            .field("signing_alg", &self.signing_alg)
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

/// What signs new access tokens. An Ed25519 key is held expanded: handing
/// `jsonwebtoken` an `EncodingKey` makes it parse the PKCS#8 DER and derive
/// the public key on every `encode` (a second scalar multiplication per
/// token, about half of a login's signing cost), so Ed25519 tokens are
/// assembled here, byte for byte as `jsonwebtoken::encode` does (a test
/// checks they are identical; Ed25519 signatures are deterministic).
enum Signer {
    Jwt(EncodingKey),
    Ed25519(Box<ed25519_dalek::SigningKey>),
}

impl Signer {
    fn sign<T: Serialize>(&self, header: &Header, claims: &T) -> Result<String> {
        match self {
            Signer::Jwt(key) => jsonwebtoken::encode(header, claims, key).map_err(Error::internal),
            Signer::Ed25519(key) => {
                use ed25519_dalek::Signer as _;
                let part = |v: Vec<u8>| URL_SAFE_NO_PAD.encode(v);
                let header = serde_json::to_vec(header).map_err(Error::internal)?;
                let claims = serde_json::to_vec(claims).map_err(Error::internal)?;
                let input = format!("{}.{}", part(header), part(claims));
                let signature = key.sign(input.as_bytes()).to_bytes();
                Ok(format!("{input}.{}", part(signature.to_vec())))
            }
        }
    }
}

/// The signing and verifying halves of one configured key, and its public
/// JWK (Ed25519 keys only: an HMAC secret is never published).
fn key_parts(key: &SigningKey) -> Result<(Algorithm, Signer, DecodingKey, Option<Value>)> {
    match key.alg {
        SigningAlg::Hs256 => Ok((
            Algorithm::HS256,
            Signer::Jwt(EncodingKey::from_secret(&key.bytes)),
            DecodingKey::from_secret(&key.bytes),
            None,
        )),
        SigningAlg::EdDsa => {
            let seed: [u8; 32] = key.bytes.as_slice().try_into().map_err(|_| {
                Error::internal(format!(
                    "signing key {}: an Ed25519 key is 32 bytes",
                    key.id
                ))
            })?;
            let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
            let public = signing.verifying_key().to_bytes();
            let x = URL_SAFE_NO_PAD.encode(public);
            let decoding = DecodingKey::from_ed_components(&x)
                .map_err(|e| Error::internal_from(format!("signing key {}", key.id), e))?;
            let jwk = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": x,
                "kid": key.id,
                "alg": "EdDSA",
                "use": "sig",
            });
            Ok((
                Algorithm::EdDSA,
                Signer::Ed25519(Box::new(signing)),
                decoding,
                Some(jwk),
            ))
        }
    }
}

impl TokenIssuer {
    /// Keys in configuration order (the first signs).
    pub fn new(
        keys: &[SigningKey],
        issuer: &str,
        access_ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let first = keys
            .first()
            .ok_or_else(|| Error::internal("no signing key"))?;
        let mut verifying = HashMap::new();
        let mut jwks = Vec::new();
        let mut signer = None;
        for key in keys {
            let (alg, key_signer, decoding, jwk) = key_parts(key)?;
            if signer.is_none() {
                signer = Some((alg, key_signer));
            }
            verifying.insert(key.id.clone(), (alg, decoding));
            jwks.extend(jwk);
        }
        let (signing_alg, signer) = signer.ok_or_else(|| Error::internal("no signing key"))?;
        Ok(Self {
            signing_kid: first.id.clone(),
            signing_alg,
            signer,
            verifying,
            jwks,
            issuer: issuer.to_owned(),
            access_ttl,
            clock,
            verified: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Access token lifetime in seconds.
    pub fn access_ttl_secs(&self) -> u64 {
        self.access_ttl.as_secs()
    }

    /// The `iss` of every access token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The public keys that verify access tokens, as JWKs (none when only
    /// HS256 keys are configured).
    pub fn jwks(&self) -> &[Value] {
        &self.jwks
    }

    /// The algorithm new tokens are signed with.
    pub fn signing_alg(&self) -> &'static str {
        match self.signing_alg {
            Algorithm::EdDSA => "EdDSA",
            _ => "HS256",
        }
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
            iss: self.issuer.clone(),
        };
        let mut header = Header::new(self.signing_alg);
        header.kid = Some(self.signing_kid.clone());
        self.signer.sign(&header, &claims)
    }

    /// A signature of a forwarded WeChat push (`X-Wxauth-Signature`): a
    /// JWT by the same key as access tokens (verify it with
    /// `/.well-known/jwks.json`), `aud` `wxauth-push`, `app`, and the
    /// `sha256` of the body it came with; valid five minutes.
    pub fn sign_push_forward(&self, appid: &str, body_sha256: &str) -> Result<String> {
        let now = self.clock.now_ms() / 1000;
        let claims = serde_json::json!({
            "iss": self.issuer,
            "aud": "wxauth-push",
            "app": appid,
            "sha256": body_sha256,
            "iat": now,
            "exp": now + 300,
        });
        let mut header = Header::new(self.signing_alg);
        header.kid = Some(self.signing_kid.clone());
        self.signer.sign(&header, &claims)
    }

    /// Checks signature, algorithm, issuer and expiry. Every failure is the
    /// same `Unauthorized` to the caller; the reason is not disclosed.
    pub fn verify_access(&self, token: &str) -> Result<AccessClaims> {
        let unauthorized = || Error::Unauthorized("the access token is invalid or expired");
        let now = self.clock.now_ms() / 1000;
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        if let Some(claims) = remembered {
            return if claims.exp <= now {
                Err(unauthorized())
            } else {
                Ok(claims)
            };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| unauthorized())?;
        let (alg, key) = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifying.get(kid))
            .ok_or_else(unauthorized)?;
        // The kid's own algorithm, never the one the token names.
        if header.alg != *alg {
            return Err(unauthorized());
        }
        let mut validation = Validation::new(*alg);
        validation.set_issuer(&[&self.issuer]);
        // Expiry is checked below against our clock, not the library's.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp", "iss", "sub"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map_err(|_| unauthorized())?;
        if data.claims.exp <= now {
            return Err(unauthorized());
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_CACHE {
            verified.retain(|_, c| c.exp > now);
            if verified.len() >= VERIFIED_CACHE / 2 {
                verified.clear();
            }
        }
        verified.insert(token.to_owned(), data.claims.clone());
        Ok(data.claims)
    }

    /// A new random refresh token, starting with its issue time (see the
    /// module's doc: why).
    pub fn new_refresh(&self) -> RefreshToken {
        let now = u64::try_from(self.clock.now_ms()).unwrap_or(0);
        let mut bytes = [0u8; REFRESH_TIME_BYTES + 32];
        bytes[..REFRESH_TIME_BYTES].copy_from_slice(&now.to_be_bytes()[8 - REFRESH_TIME_BYTES..]);
        rand::rng().fill(&mut bytes[REFRESH_TIME_BYTES..]);
        let token = format!("{REFRESH_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
        let hash = refresh_hash(&token);
        RefreshToken {
            token: token.into(),
            hash,
        }
    }
}

/// The stored form (key) of a refresh token: its time bytes, then its
/// SHA-256; for a token of the first format, the SHA-256 alone.
pub fn refresh_hash(token: &str) -> Vec<u8> {
    let digest = Sha256::digest(token.as_bytes());
    // 8 base64url characters are exactly the 6 time bytes.
    let time = token
        .strip_prefix(REFRESH_PREFIX)
        .filter(|rest| rest.len() == REFRESH_CHARS)
        .and_then(|rest| rest.get(..8))
        .and_then(|time| URL_SAFE_NO_PAD.decode(time).ok());
    match time {
        Some(mut key) => {
            key.extend_from_slice(&digest);
            key
        }
        None => digest.to_vec(),
    }
}

/// Whether a string is shaped like one of our refresh tokens (so garbage is
/// refused without a database round trip).
pub fn looks_like_refresh(token: &str) -> bool {
    token.strip_prefix(REFRESH_PREFIX).is_some_and(|rest| {
        matches!(rest.len(), REFRESH_CHARS | FIRST_FORMAT_REFRESH_CHARS)
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wechat_miniapp::OffsetClock;

    fn key(id: &str, b: u8) -> SigningKey {
        SigningKey {
            id: id.into(),
            alg: SigningAlg::EdDsa,
            bytes: vec![b; 32],
        }
    }

    fn hs_key(id: &str, b: u8) -> SigningKey {
        SigningKey {
            alg: SigningAlg::Hs256,
            ..key(id, b)
        }
    }

    fn issuer(keys: &[SigningKey], clock: &OffsetClock) -> TokenIssuer {
        TokenIssuer::new(
            keys,
            "wxauth",
            Duration::from_secs(60),
            Arc::new(clock.clone()),
        )
        .unwrap()
    }

    #[test]
    fn ed25519_tokens_are_what_jsonwebtoken_would_sign() {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let clock = OffsetClock::new();
        let k = key("k1", 7);
        let t = issuer(std::slice::from_ref(&k), &clock);
        let ours = t.issue_access("u1", "s1", "wxa").unwrap();
        let claims = t.verify_access(&ours).unwrap();
        let seed: [u8; 32] = k.bytes.as_slice().try_into().unwrap();
        let der = ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("k1".into());
        let theirs =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes()))
                .unwrap();
        assert_eq!(ours, theirs);
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
        // Remembered after the first check; still expires.
        assert_eq!(t.verify_access(&token).unwrap(), claims);
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
        // alg confusion: HS256 "signed" with the public key (as published in
        // the JWKS) as the secret, under the Ed25519 key's kid.
        let x = t.jwks()[0]["x"].as_str().unwrap().to_owned();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let claims = t.verify_access(&token).unwrap();
        for secret in [x.as_bytes().to_vec(), URL_SAFE_NO_PAD.decode(&x).unwrap()] {
            let confused =
                jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
            assert!(t.verify_access(&confused).is_err());
        }
        // An HS256 key verifies only HS256 tokens.
        let hs = issuer(&[hs_key("h1", 3)], &clock);
        let hs_token = hs.issue_access("u1", "s1", "wxa").unwrap();
        assert!(hs.verify_access(&hs_token).is_ok());
        assert!(hs.jwks().is_empty(), "an HMAC secret is never published");
        assert!(t.jwks().len() == 1 && t.jwks()[0]["kty"] == "OKP");
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
        let before = clock.now_ms();
        let a = t.new_refresh();
        let after = clock.now_ms();
        let b = t.new_refresh();
        assert_ne!(a.token.expose(), b.token.expose());
        assert!(looks_like_refresh(a.token.expose()));
        assert_eq!(a.hash, refresh_hash(a.token.expose()));
        // The key: the issue time, then the token's SHA-256.
        assert_eq!(a.hash.len(), REFRESH_TIME_BYTES + 32);
        let mut time = [0u8; 8];
        time[8 - REFRESH_TIME_BYTES..].copy_from_slice(&a.hash[..REFRESH_TIME_BYTES]);
        let time = i64::from_be_bytes(time);
        assert!(
            before <= time && time <= after,
            "{before} <= {time} <= {after}"
        );
        assert_eq!(
            a.hash[REFRESH_TIME_BYTES..],
            Sha256::digest(a.token.expose().as_bytes())[..]
        );
        // Made later: keyed later, whatever the random part.
        clock.advance(Duration::from_millis(1));
        for _ in 0..20 {
            assert!(t.new_refresh().hash > a.hash);
        }
        // The first format: 32 random bytes, keyed by the SHA-256 alone.
        let first = format!("wxr_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(looks_like_refresh(&first));
        assert_eq!(
            refresh_hash(&first),
            Sha256::digest(first.as_bytes()).to_vec()
        );
        assert!(!looks_like_refresh("wxr_short"));
        assert!(!looks_like_refresh(&format!("{}x", a.token.expose())));
        assert_eq!(
            refresh_hash("wxr_é"),
            Sha256::digest("wxr_é".as_bytes()).to_vec()
        );
        assert!(!looks_like_refresh(
            &a.token.expose().replace("wxr_", "xxx_")
        ));
    }
}
