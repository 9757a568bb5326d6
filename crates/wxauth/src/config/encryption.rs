//! `[encryption]`: the keys that seal session_keys and phone numbers at rest.

use serde::Deserialize;

use super::keys::{KeyConfig, NamedKey, resolve_key};
use super::{ConfigError, bad};

/// Encryption at rest.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// 32-byte keys; the first encrypts, all decrypt. Ids are 1–255.
    pub keys: Vec<KeyConfig>,
}

impl EncryptionConfig {
    /// Checks and loads every key: 32 bytes each, ids distinct from 1 to 255.
    pub(super) fn check(&self) -> Result<Vec<NamedKey>, ConfigError> {
        if self.keys.is_empty() {
            return Err(bad(
                "encryption.keys: configure at least one 32-byte key (base64)",
            ));
        }
        let mut encryption_keys = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let path = format!("encryption.keys[{i}]");
            if k.alg.is_some() {
                return Err(bad(format!(
                    "{path}.alg: only signing keys have an algorithm"
                )));
            }
            let bytes = resolve_key(k, &path)?;
            if bytes.len() != 32 {
                return Err(bad(format!(
                    "{path}: an encryption key must be exactly 32 bytes"
                )));
            }
            let id_ok = k.id.parse::<u8>().is_ok_and(|n| n > 0);
            if !id_ok || encryption_keys.iter().any(|s: &NamedKey| s.id == k.id) {
                return Err(bad(format!(
                    "{path}.id: ids must be distinct numbers from 1 to 255"
                )));
            }
            encryption_keys.push(NamedKey {
                id: k.id.clone(),
                bytes,
            });
        }
        Ok(encryption_keys)
    }
}
