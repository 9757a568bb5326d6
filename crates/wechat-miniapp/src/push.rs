//! WeChat's message push (消息推送): the signatures of its URL check and
//! pushes, and the safe-mode crypto (`docs/wechat-platform.md` §1).
//!
//! - `signature = sha1(sort(token, timestamp, nonce))`, hex: the URL check
//!   and every push carry it. It does not cover the body: a plain-mode push
//!   is only as safe as its URL.
//! - `msg_signature = sha1(sort(token, timestamp, nonce, Encrypt))`, hex:
//!   compatible and safe mode; it covers the ciphertext.
//! - `Encrypt` = base64(AES-256-CBC(key, iv = key[..16], 16 random bytes ‖
//!   u32 big-endian length ‖ message ‖ appid ‖ PKCS#7 padding to a multiple
//!   of **32** bytes)), key = base64(EncodingAESKey + "=").
//!
//! Every comparison of a signature is constant-time; no error carries key
//! material or plaintext.

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::secret::SecretText;

/// base64 that accepts non-zero bits after the last byte: an EncodingAESKey
/// is 43 random characters, so its last one usually has them (WeChat's
/// sample key ends in `G`), and a strict decoder refuses it.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// The block the padding fills to (WeChat's sample code uses 32, not AES's
/// 16: a last byte of 17..=32 is valid).
const PAD_BLOCK: usize = 32;

/// Why a push could not be checked or decrypted. Messages never include
/// key material or the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The EncodingAESKey is not 43 characters of base64 decoding to 32
    /// bytes.
    #[error("the EncodingAESKey must be 43 characters (letters and digits) decoding to 32 bytes")]
    BadAesKey,
    /// The token is empty or longer than WeChat allows (3-32 characters).
    #[error("the push token must be 3 to 32 letters or digits")]
    BadToken,
    /// `Encrypt` is not base64 or not whole AES blocks.
    #[error("Encrypt is not base64 of whole AES blocks")]
    BadCiphertext,
    /// The plaintext's padding or length is wrong: another key, or an
    /// altered message.
    #[error("the message does not decrypt with this app's EncodingAESKey")]
    WrongKey,
    /// The message decrypted but names another app.
    #[error("the message was encrypted for another app")]
    WrongApp,
}

/// One app's push settings: its token, its EncodingAESKey (compatible and
/// safe mode) and its appid (the end of every plaintext).
#[derive(Clone)]
pub struct PushKeys {
    token: SecretText,
    aes_key: Option<[u8; 32]>,
    appid: String,
}

impl std::fmt::Debug for PushKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushKeys")
            .field("appid", &self.appid)
            .field("encrypted", &self.aes_key.is_some())
            .finish_non_exhaustive()
    }
}

impl PushKeys {
    /// Checks the token and decodes the EncodingAESKey (None: plain mode
    /// only).
    pub fn new(
        appid: &str,
        token: &str,
        encoding_aes_key: Option<&str>,
    ) -> Result<Self, PushError> {
        if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(PushError::BadToken);
        }
        let aes_key = match encoding_aes_key {
            None => None,
            Some(text) => {
                if text.len() != 43 || !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(PushError::BadAesKey);
                }
                let bytes = LENIENT
                    .decode(format!("{text}="))
                    .map_err(|_| PushError::BadAesKey)?;
                Some(bytes.try_into().map_err(|_| PushError::BadAesKey)?)
            }
        };
        Ok(Self {
            token: SecretText::new(token),
            aes_key,
            appid: appid.to_owned(),
        })
    }

    /// Whether compatible and safe mode can be decrypted.
    pub fn decrypts(&self) -> bool {
        self.aes_key.is_some()
    }

    /// `signature` for a timestamp and nonce.
    pub fn signature(&self, timestamp: &str, nonce: &str) -> String {
        sorted_sha1(&[self.token.expose(), timestamp, nonce])
    }

    /// `msg_signature` for a timestamp, nonce and `Encrypt`.
    pub fn msg_signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        sorted_sha1(&[self.token.expose(), timestamp, nonce, encrypt])
    }

    /// Whether `signature` is right (constant-time).
    pub fn check_signature(&self, signature: &str, timestamp: &str, nonce: &str) -> bool {
        same(&self.signature(timestamp, nonce), signature)
    }

    /// Whether `msg_signature` is right (constant-time).
    pub fn check_msg_signature(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> bool {
        same(
            &self.msg_signature(timestamp, nonce, encrypt),
            msg_signature,
        )
    }

    /// Decrypts `Encrypt`: the message, checked to be this app's.
    pub fn decrypt(&self, encrypt: &str) -> Result<Vec<u8>, PushError> {
        let key = self.aes_key.as_ref().ok_or(PushError::WrongKey)?;
        let mut data = STANDARD
            .decode(encrypt.trim())
            .map_err(|_| PushError::BadCiphertext)?;
        if data.is_empty() || data.len() % 16 != 0 {
            return Err(PushError::BadCiphertext);
        }
        let plain = cbc::Decryptor::<Aes256>::new(key.into(), key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| PushError::BadCiphertext)?;
        let pad = usize::from(*plain.last().ok_or(PushError::WrongKey)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(PushError::WrongKey);
        }
        let body = &plain[..plain.len() - pad];
        if body.len() < 20 {
            return Err(PushError::WrongKey);
        }
        let len = u32::from_be_bytes([body[16], body[17], body[18], body[19]]) as usize;
        let rest = &body[20..];
        if len > rest.len() {
            return Err(PushError::WrongKey);
        }
        let (message, appid) = rest.split_at(len);
        if !same_bytes(appid, self.appid.as_bytes()) {
            return Err(PushError::WrongApp);
        }
        Ok(message.to_vec())
    }

    /// Encrypts a message as WeChat does, with the 16 leading bytes given
    /// (random in use; fixed in tests).
    pub fn encrypt(&self, message: &[u8], random: [u8; 16]) -> Result<String, PushError> {
        let key = self.aes_key.as_ref().ok_or(PushError::BadAesKey)?;
        let len = u32::try_from(message.len()).map_err(|_| PushError::BadCiphertext)?;
        let mut plain = Vec::with_capacity(message.len() + 64);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(message);
        plain.extend_from_slice(self.appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let n = plain.len();
        let sealed = cbc::Encryptor::<Aes256>::new(key.into(), key[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, n)
            .map_err(|_| PushError::BadCiphertext)?;
        Ok(STANDARD.encode(sealed))
    }
}

fn sorted_sha1(parts: &[&str]) -> String {
    let mut parts = parts.to_vec();
    parts.sort_unstable();
    hex::encode(Sha1::digest(parts.concat().as_bytes()))
}

fn same(expected: &str, given: &str) -> bool {
    same_bytes(
        expected.as_bytes(),
        given.trim().to_ascii_lowercase().as_bytes(),
    )
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    // WeChat's own sample (cryptoDemo's Sample.py), docs/wechat-platform.md §1d.
    const ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    fn sample() -> PushKeys {
        PushKeys::new(
            "wx2c2769f8efd9abc2",
            "spamtest",
            Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
        )
        .unwrap()
    }

    #[test]
    fn the_official_sample_verifies_and_decrypts() {
        let keys = sample();
        assert!(keys.check_msg_signature(
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
            "1409735669",
            "1320562132",
            ENCRYPT
        ));
        assert!(keys.check_signature(
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
            "1409735669",
            "1320562132"
        ));
        let message = String::from_utf8(keys.decrypt(ENCRYPT).unwrap()).unwrap();
        assert!(message.starts_with("<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]>"));
        assert!(message.contains("<Content><![CDATA[abcdteT]]></Content>"));
        assert!(message.ends_with("</xml>"));
    }

    #[test]
    fn the_documented_plain_examples_verify() {
        // docs/wechat-platform.md §1b and §1c (Token "AAAAA").
        let keys = PushKeys::new("wx", "AAAAA", None).unwrap();
        assert!(keys.check_signature(
            "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "1714036504",
            "1514711492"
        ));
        assert!(keys.check_signature(
            "899cf89e464efb63f54ddac96b0a0a235f53aa78",
            "1714037059",
            "486452656"
        ));
        assert!(!keys.check_signature(
            "899cf89e464efb63f54ddac96b0a0a235f53aa78",
            "1714037059",
            "486452657"
        ));
    }

    #[test]
    fn what_is_encrypted_decrypts_at_every_length() {
        let keys = sample();
        for n in 0..80 {
            let message = vec![b'x'; n];
            let sealed = keys.encrypt(&message, [7; 16]).unwrap();
            assert_eq!(keys.decrypt(&sealed).unwrap(), message, "length {n}");
        }
        // Encrypting the sample's message with its random bytes gives the
        // sample back.
        let message = keys.decrypt(ENCRYPT).unwrap();
        let data = STANDARD.decode(ENCRYPT).unwrap();
        let key = sample().aes_key.unwrap();
        let mut buf = data.clone();
        let plain = cbc::Decryptor::<Aes256>::new((&key).into(), key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .unwrap();
        let random: [u8; 16] = plain[..16].try_into().unwrap();
        assert_eq!(keys.encrypt(&message, random).unwrap(), ENCRYPT);
    }

    #[test]
    fn another_app_or_key_or_altered_text_is_refused() {
        let keys = sample();
        let other_app = PushKeys::new(
            "wx0000000000000000",
            "spamtest",
            Some("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
        )
        .unwrap();
        assert_eq!(other_app.decrypt(ENCRYPT), Err(PushError::WrongApp));
        let other_key = PushKeys::new(
            "wx2c2769f8efd9abc2",
            "spamtest",
            Some("bbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"),
        )
        .unwrap();
        assert!(other_key.decrypt(ENCRYPT).is_err());
        assert_eq!(keys.decrypt("not base64!"), Err(PushError::BadCiphertext));
        assert_eq!(keys.decrypt("AAAA"), Err(PushError::BadCiphertext));
        let mut altered = STANDARD.decode(ENCRYPT).unwrap();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(keys.decrypt(&STANDARD.encode(altered)).is_err());
        assert!(!keys.check_msg_signature(
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa",
            "1409735669",
            "1320562132",
            &ENCRYPT.replace('h', "H")
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert_eq!(
            PushKeys::new("wx", "", None).unwrap_err(),
            PushError::BadToken
        );
        assert_eq!(
            PushKeys::new("wx", "tok", Some("short")).unwrap_err(),
            PushError::BadAesKey
        );
        assert_eq!(
            PushKeys::new("wx", "tok", Some(&"+".repeat(43))).unwrap_err(),
            PushError::BadAesKey
        );
    }
}
