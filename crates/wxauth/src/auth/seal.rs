//! Encryption at rest for session_keys and phone numbers.
//!
//! XChaCha20-Poly1305 (random 192-bit nonces, so no nonce bookkeeping) with
//! the key id stored beside the ciphertext, so keys can rotate: the first
//! configured key seals, every configured key opens. The associated data
//! binds each blob to its row and field, so a sealed value copied into
//! another user's row does not open.
//!
//! Layout: `[1 (format)] [key id] [24-byte nonce] [ciphertext + 16-byte tag]`.
//!
//! Sealed values cannot be searched (random nonces). Where an operator
//! must find a row by a sealed value (a phone number), a lookup tag is
//! stored beside it: `[key id] [HMAC-SHA256(subkey, value), 16 bytes]`,
//! the subkey derived from the same encryption key, so rotating and
//! re-sealing (`wxauth keys reseal`) re-tags too, and a search tries the
//! tag of every configured key.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

use crate::config::NamedKey;
use crate::error::{Error, Result};

const FORMAT: u8 = 1;

/// Seals and opens values with the configured keys.
pub struct Sealer {
    keys: Vec<(u8, XChaCha20Poly1305)>,
    /// Per key, the subkey lookup tags are computed with.
    tag_keys: Vec<(u8, [u8; 32])>,
}

const TAG_BYTES: usize = 16;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
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
        let mut tag_keys = Vec::new();
        for k in keys {
            let id: u8 = k
                .id
                .parse()
                .map_err(|_| Error::internal("encryption key id is not a number from 1 to 255"))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&k.bytes)
                .map_err(|_| Error::internal("encryption key is not 32 bytes"))?;
            out.push((id, cipher));
            tag_keys.push((id, hmac(&k.bytes, &[b"wxauth lookup tag v1"])));
        }
        if out.is_empty() {
            return Err(Error::internal("no encryption key"));
        }
        Ok(Self {
            keys: out,
            tag_keys,
        })
    }

    /// The id of the key that seals now.
    pub fn current_key_id(&self) -> u8 {
        self.keys[0].0
    }

    /// The id of the key a sealed value or lookup tag was made with.
    pub fn key_id_of_sealed(sealed: &[u8]) -> Option<u8> {
        (sealed.len() >= 2 && sealed[0] == FORMAT).then(|| sealed[1])
    }

    /// The id of the key a lookup tag was made with.
    pub fn key_id_of_tag(tag: &[u8]) -> Option<u8> {
        (tag.len() == 1 + TAG_BYTES).then(|| tag[0])
    }

    /// The lookup tag of `value` (in the namespace `purpose`) under the
    /// current key.
    pub fn lookup_tag(&self, purpose: &str, value: &str) -> Vec<u8> {
        self.tag_with(0, purpose, value)
    }

    /// The lookup tags of `value` under every configured key (what a search
    /// must try: rows not yet re-sealed carry an older key's tag).
    pub fn lookup_tags(&self, purpose: &str, value: &str) -> Vec<Vec<u8>> {
        (0..self.tag_keys.len())
            .map(|i| self.tag_with(i, purpose, value))
            .collect()
    }

    fn tag_with(&self, index: usize, purpose: &str, value: &str) -> Vec<u8> {
        let (id, key) = &self.tag_keys[index];
        let mac = hmac(key, &[purpose.as_bytes(), b"\0", value.as_bytes()]);
        let mut tag = Vec::with_capacity(1 + TAG_BYTES);
        tag.push(*id);
        tag.extend_from_slice(&mac[..TAG_BYTES]);
        tag
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
        assert_eq!(Sealer::key_id_of_sealed(&sealed), Some(1));
        assert_eq!(rotated.current_key_id(), 2);
    }

    #[test]
    fn lookup_tags_per_key() {
        let old = Sealer::new(&[key("1", 7)]).unwrap();
        let rotated = Sealer::new(&[key("2", 9), key("1", 7)]).unwrap();
        let tag = old.lookup_tag("phone\0wxapp", "13800138000");
        assert_eq!(tag.len(), 17);
        assert_eq!(Sealer::key_id_of_tag(&tag), Some(1));
        assert_eq!(tag, old.lookup_tag("phone\0wxapp", "13800138000"));
        assert_ne!(tag, old.lookup_tag("phone\0wxapp", "13800138001"));
        assert_ne!(tag, old.lookup_tag("phone\0other", "13800138000"));
        let tags = rotated.lookup_tags("phone\0wxapp", "13800138000");
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[1], tag, "the old key's tag is still searched");
        assert_eq!(Sealer::key_id_of_tag(&tags[0]), Some(2));
        assert!(!tag.windows(4).any(|w| w == b"1380"));
    }
}
