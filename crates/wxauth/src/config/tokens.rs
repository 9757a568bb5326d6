//! `[tokens]`: access and refresh tokens, and the keys that sign them.

use std::time::Duration;

use serde::Deserialize;

use super::keys::{KeyConfig, resolve_key};
use super::{ConfigError, bad};

/// Session token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Access token lifetime in seconds.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime in seconds (each refresh starts a new one).
    pub refresh_ttl_secs: u64,
    /// Signing keys; the first signs, all verify (for rotation). Each has
    /// an `alg`: `EdDSA` (the default; the key is a 32-byte Ed25519 seed and
    /// its public half is published at `/.well-known/jwks.json`) or `HS256`
    /// (a shared secret of 32+ bytes, never published).
    pub signing_keys: Vec<KeyConfig>,
    /// The `iss` of access tokens (what services verifying them expect).
    pub issuer: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            signing_keys: Vec::new(),
            issuer: "wxauth".into(),
        }
    }
}

/// How an access-token signing key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// Ed25519: services verify with the public key (JWKS).
    EdDsa,
    /// HMAC-SHA256: whoever verifies holds the secret.
    Hs256,
}

/// An access-token signing key, checked.
#[derive(Clone)]
pub struct SigningKey {
    /// Its `kid`.
    pub id: String,
    /// How it signs.
    pub alg: SigningAlg,
    /// The Ed25519 seed (32 bytes) or the HMAC secret.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, {:?}, {} bytes)",
            self.id,
            self.alg,
            self.bytes.len()
        )
    }
}

/// `[tokens]`, checked.
pub(super) struct Tokens {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub signing_keys: Vec<SigningKey>,
    pub issuer: String,
}

impl TokenConfig {
    /// Checks the lifetimes, the issuer and every signing key (loading it).
    pub(super) fn check(&self) -> Result<Tokens, ConfigError> {
        if self.access_ttl_secs == 0 || self.refresh_ttl_secs < self.access_ttl_secs {
            return Err(bad(
                "tokens: access_ttl_secs must be positive and at most refresh_ttl_secs",
            ));
        }
        if self.signing_keys.is_empty() {
            return Err(bad(
                "tokens.signing_keys: configure at least one key (32+ random bytes, base64)",
            ));
        }
        let mut signing_keys: Vec<SigningKey> = Vec::new();
        for (i, k) in self.signing_keys.iter().enumerate() {
            let path = format!("tokens.signing_keys[{i}]");
            let bytes = resolve_key(k, &path)?;
            let alg = match k.alg.as_deref().unwrap_or("EdDSA") {
                "EdDSA" => SigningAlg::EdDsa,
                "HS256" => SigningAlg::Hs256,
                other => {
                    return Err(bad(format!(
                        "{path}.alg: {other:?}; use \"EdDSA\" (the default) or \"HS256\""
                    )));
                }
            };
            match alg {
                SigningAlg::EdDsa if bytes.len() != 32 => {
                    return Err(bad(format!(
                        "{path}: an EdDSA key is an Ed25519 seed of exactly 32 bytes (head -c 32 /dev/urandom | base64); for a longer HMAC secret set alg = \"HS256\""
                    )));
                }
                SigningAlg::Hs256 if bytes.len() < 32 => {
                    return Err(bad(format!("{path}: an HS256 key needs at least 32 bytes")));
                }
                _ => {}
            }
            if k.id.is_empty() || signing_keys.iter().any(|s| s.id == k.id) {
                return Err(bad(format!(
                    "{path}.id: ids must be non-empty and distinct"
                )));
            }
            signing_keys.push(SigningKey {
                id: k.id.clone(),
                alg,
                bytes,
            });
        }
        if self.issuer.trim().is_empty() {
            return Err(bad("tokens.issuer: must not be empty"));
        }
        Ok(Tokens {
            access_ttl: Duration::from_secs(self.access_ttl_secs),
            refresh_ttl: Duration::from_secs(self.refresh_ttl_secs),
            signing_keys,
            issuer: self.issuer.trim().to_owned(),
        })
    }
}
