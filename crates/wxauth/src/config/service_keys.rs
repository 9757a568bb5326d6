//! `[[service_keys]]`: the keys the developer's services present
//! (introspection, the admin API). Only a key's hash is kept.

use serde::Deserialize;
use sha2::Digest;

use super::{ConfigError, bad, env_var};
use crate::vocab::ServiceScope;

/// A service key as configured: its id, how to recognise it, what it may do.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceKeyConfig {
    /// A name for logs and the audit trail.
    pub id: String,
    /// The SHA-256 of the key, hex (the key itself stays with the service).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Or: the environment variable holding the key itself.
    #[serde(default)]
    pub key_env: Option<String>,
    /// What it may do: `introspect`, `users:read`, `users:write`,
    /// `sessions:revoke`, `data:read`, `data:write`, `audit:read`,
    /// `files:read`, `files:write`, `messages:send`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A service key, checked: only its hash is kept.
#[derive(Clone)]
pub struct ServiceKey {
    /// Its id.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Its scopes.
    pub scopes: Vec<ServiceScope>,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceKey({}, {:?})", self.id, self.scopes)
    }
}

/// Checks every service key: distinct ids, a hash or a long enough key,
/// known scopes.
pub(super) fn check_service_keys(
    configured: &[ServiceKeyConfig],
) -> Result<Vec<ServiceKey>, ConfigError> {
    let mut service_keys: Vec<ServiceKey> = Vec::new();
    for (i, k) in configured.iter().enumerate() {
        let path = format!("service_keys[{i}]");
        if k.id.is_empty() || service_keys.iter().any(|s| s.id == k.id) {
            return Err(bad(format!(
                "{path}.id: ids must be non-empty and distinct"
            )));
        }
        let sha256: [u8; 32] = match (&k.sha256, &k.key_env) {
            (Some(hex_text), None) => hex::decode(hex_text.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    bad(format!(
                        "{path}.sha256: 64 hex digits (sha256sum of the key)"
                    ))
                })?,
            (None, Some(var)) => {
                let key = env_var(var, &format!("{path}.key_env"))?;
                if key.trim().len() < 24 {
                    return Err(bad(format!(
                        "{path}.key_env: a service key needs at least 24 characters"
                    )));
                }
                sha2::Sha256::digest(key.trim().as_bytes()).into()
            }
            _ => {
                return Err(bad(format!(
                    "{path}: give exactly one of sha256 or key_env"
                )));
            }
        };
        let scopes = k
            .scopes
            .iter()
            .map(|scope| ServiceScope::parse(scope))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|message| bad(format!("{path}.scopes: {message}")))?;
        service_keys.push(ServiceKey {
            id: k.id.clone(),
            sha256,
            scopes,
        });
    }
    Ok(service_keys)
}
