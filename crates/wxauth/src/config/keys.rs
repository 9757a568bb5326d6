//! Keys given in the configuration (signing and encryption keys share the
//! shape): inline base64 or an environment variable, resolved to bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use wechat_miniapp::SecretText;

use super::{ConfigError, bad, env_var};

/// A named key, given as base64 in the file or through an environment variable.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id (a JWT `kid`, or the id stored beside ciphertexts).
    pub id: String,
    /// The key, base64.
    #[serde(default)]
    pub key: Option<SecretText>,
    /// The name of the environment variable holding the key, base64.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Signing keys only: `EdDSA` (default) or `HS256`.
    #[serde(default)]
    pub alg: Option<String>,
}

/// A named key, resolved to bytes.
#[derive(Clone)]
pub struct NamedKey {
    /// Its id.
    pub id: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NamedKey({}, <{} bytes redacted>)",
            self.id,
            self.bytes.len()
        )
    }
}

pub(super) fn resolve_key(k: &KeyConfig, key_path: &str) -> Result<Vec<u8>, ConfigError> {
    let text = match (&k.key, &k.key_env) {
        (Some(t), None) => t.expose().to_owned(),
        (None, Some(var)) => env_var(var, key_path)?,
        _ => {
            return Err(bad(format!(
                "{key_path}: give exactly one of key or key_env"
            )));
        }
    };
    STANDARD
        .decode(text.trim())
        .map_err(|_| bad(format!("{key_path}: not valid base64")))
}
