//! Signed URLs for private files: `<image src>` and `wx.downloadFile`
//! send no `Authorization`, so the URL itself carries the permission,
//! for one file, until a time.
//!
//! `sig` is `<key id>.<HMAC-SHA256>` over the file id and the expiry, with
//! a key derived from each configured encryption key: every instance
//! (same configuration) accepts every other's URLs, and after a key
//! rotation URLs signed with the older key stay valid until they expire,
//! as long as that key is still configured.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::NamedKey;

type HmacSha256 = Hmac<Sha256>;

/// What a derived key signs with, and its purpose label (so a file URL's
/// key is never the encryption key itself, nor any other derived key).
const PURPOSE: &[u8] = b"wxauth file urls v1";

/// HMAC-SHA256 of `message` under `key`.
fn keyed(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Signs and checks file URLs.
#[derive(Clone)]
pub struct UrlSigner {
    /// (key id, derived key), the signing one first.
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "UrlSigner({ids:?})")
    }
}

/// Why a signature was refused (all answer 403; the log says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not of the form `<key id>.<mac>`, or a key not configured.
    Malformed,
    /// The MAC is not the file's and the expiry's.
    Wrong,
    /// Past its expiry.
    Expired,
}

impl UrlSigner {
    /// Keys derived from the encryption keys (the first signs).
    pub fn new(encryption_keys: &[NamedKey]) -> Self {
        let keys = encryption_keys
            .iter()
            .map(|k| (k.id.clone(), keyed(&k.bytes, PURPOSE)))
            .collect();
        Self { keys }
    }

    fn mac(key: &[u8; 32], file_id: &str, expires: i64) -> [u8; 32] {
        keyed(key, format!("{file_id}\n{expires}").as_bytes())
    }

    /// The `sig` of `file_id` until `expires` (Unix seconds).
    pub fn sign(&self, file_id: &str, expires: i64) -> String {
        let (id, key) = &self.keys[0];
        format!(
            "{id}.{}",
            URL_SAFE_NO_PAD.encode(Self::mac(key, file_id, expires))
        )
    }

    /// Checks `sig` for `file_id` and `expires` at `now` (Unix seconds).
    pub fn check(&self, file_id: &str, expires: i64, sig: &str, now: i64) -> Result<(), Refused> {
        let (key_id, mac_text) = sig.split_once('.').ok_or(Refused::Malformed)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or(Refused::Malformed)?;
        let given = URL_SAFE_NO_PAD
            .decode(mac_text)
            .map_err(|_| Refused::Malformed)?;
        let expected = Self::mac(key, file_id, expires);
        if !bool::from(given.as_slice().ct_eq(&expected)) {
            return Err(Refused::Wrong);
        }
        if now > expires {
            return Err(Refused::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, byte: u8) -> NamedKey {
        NamedKey {
            id: id.into(),
            bytes: vec![byte; 32],
        }
    }

    #[test]
    fn a_signature_holds_for_its_file_until_it_expires() {
        let signer = UrlSigner::new(&[key("1", 6)]);
        let sig = signer.sign("f1", 1_000);
        assert_eq!(signer.check("f1", 1_000, &sig, 999), Ok(()));
        assert_eq!(
            signer.check("f1", 1_000, &sig, 1_001),
            Err(Refused::Expired)
        );
        assert_eq!(signer.check("f2", 1_000, &sig, 999), Err(Refused::Wrong));
        assert_eq!(signer.check("f1", 2_000, &sig, 999), Err(Refused::Wrong));
        assert_eq!(
            signer.check("f1", 1_000, "nonsense", 999),
            Err(Refused::Malformed)
        );
        let mut tampered = sig.clone();
        tampered.pop();
        tampered.push(if sig.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(
            signer.check("f1", 1_000, &tampered, 999),
            Err(Refused::Wrong)
        );
    }

    #[test]
    fn after_a_rotation_older_signatures_hold_while_their_key_is_configured() {
        let old = UrlSigner::new(&[key("1", 6)]);
        let sig = old.sign("f1", 1_000);
        let rotated = UrlSigner::new(&[key("2", 7), key("1", 6)]);
        assert_eq!(rotated.check("f1", 1_000, &sig, 999), Ok(()));
        assert!(rotated.sign("f1", 1_000).starts_with("2."));
        let retired = UrlSigner::new(&[key("2", 7)]);
        assert_eq!(
            retired.check("f1", 1_000, &sig, 999),
            Err(Refused::Malformed)
        );
    }
}
