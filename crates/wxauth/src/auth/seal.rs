//! Encryption at rest for session_keys and phone numbers.
//!
//! XChaCha20-Poly1305 (random 192-bit nonces, so no nonce bookkeeping) with
//! the key id stored beside the ciphertext, so keys can rotate: the first
//! configured key seals, every configured key opens. The associated data
//! binds each blob to its row and field, so a sealed value copied into
//! another user's row does not open.
//!
//! Layout: `[1 (format)] [key id] [24-byte nonce] [ciphertext + 16-byte tag]`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::config::NamedKey;
use crate::error::{Error, Result};

const FORMAT: u8 = 1;

/// Seals and opens values with the configured keys.
pub struct Sealer {
    keys: Vec<(u8, XChaCha20Poly1305)>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field(
                "key_ids",
                &self.keys.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Sealer {
    /// Keys with numeric ids 1–255, the sealing key first (checked by config).
    pub fn new(keys: &[NamedKey]) -> Result<Self> {
        let mut out = Vec::new();
        for k in keys {
            let id: u8 = k
                .id
                .parse()
                .map_err(|_| Error::internal("encryption key id is not a number from 1 to 255"))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&k.bytes)
                .map_err(|_| Error::internal("encryption key is not 32 bytes"))?;
            out.push((id, cipher));
        }
        if out.is_empty() {
            return Err(Error::internal("no encryption key"));
        }
        Ok(Self { keys: out })
    }

    /// Encrypts `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let (id, cipher) = &self.keys[0];
        let nonce_bytes: [u8; 24] = rand::rng().random();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        let mut out = Vec::with_capacity(2 + 24 + ciphertext.len());
        out.push(FORMAT);
        out.push(*id);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts a sealed value; fails if it was altered, moved to another
    /// row (`aad`), or sealed with a key no longer configured.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < 2 + 24 + 16 || sealed[0] != FORMAT {
            return Err(Error::internal("sealed value is malformed"));
        }
        let id = sealed[1];
        let (_, cipher) = self.keys.iter().find(|(k, _)| *k == id).ok_or_else(|| {
            Error::internal(format!(
                "sealed with encryption key {id}, which is not configured"
            ))
        })?;
        cipher
            .decrypt(
                XNonce::from_slice(&sealed[2..26]),
                Payload {
                    msg: &sealed[26..],
                    aad,
                },
            )
            .map_err(|_| Error::internal("sealed value failed authentication"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, b: u8) -> NamedKey {
        NamedKey {
            id: id.into(),
            bytes: vec![b; 32],
        }
    }

    #[test]
    fn round_trip_rotation_and_binding() {
        let old = Sealer::new(&[key("1", 7)]).unwrap();
        let sealed = old.seal(b"tiihtNczf5v6AKRyjwEUhQ==", b"row-a").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"tiihtNcz"));
        assert_eq!(
            old.open(&sealed, b"row-a").unwrap(),
            b"tiihtNczf5v6AKRyjwEUhQ=="
        );
        assert!(old.open(&sealed, b"row-b").is_err(), "bound to its row");
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(old.open(&tampered, b"row-a").is_err());
        // Rotation: new key seals, old key still opens.
        let rotated = Sealer::new(&[key("2", 9), key("1", 7)]).unwrap();
        assert_eq!(
            rotated.open(&sealed, b"row-a").unwrap(),
            b"tiihtNczf5v6AKRyjwEUhQ=="
        );
        assert_eq!(rotated.seal(b"x", b"r").unwrap()[1], 2);
        let new_only = Sealer::new(&[key("2", 9)]).unwrap();
        assert!(new_only.open(&sealed, b"row-a").is_err());
        assert!(old.open(&[1, 1, 2], b"row-a").is_err());
    }
}
