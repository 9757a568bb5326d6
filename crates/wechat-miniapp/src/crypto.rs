//! WeChat's mini-program cryptography: decrypting `encryptedData` and
//! checking the two kinds of session_key signatures.
//!
//! - `encryptedData`: AES-128-CBC with PKCS#7 padding; key = base64-decoded
//!   session_key (16 bytes), iv = base64-decoded iv (16 bytes). The plaintext
//!   is JSON with a `watermark.appid` that must equal our own appid.
//! - `rawData` signature: `sha1(raw_data + session_key)`, hex, where the
//!   session_key is appended as its base64 *text*.
//! - Login-state signature: `hmac_sha256(key = session_key base64 text as
//!   bytes, message)`, hex. `checksession` signs the empty string.
//!
//! Every comparison of a signature is constant-time.

use aes::Aes128;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::secret::SessionKey;

/// Why an `encryptedData` payload could not be decrypted or trusted. Messages
/// name the likely cause for the mini-program developer and never include
/// key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    /// A field is not valid base64 (after mapping spaces back to `+`).
    #[error("{field} is not valid base64")]
    InvalidBase64 {
        /// Which input: `session_key`, `iv` or `encrypted_data`.
        field: &'static str,
    },
    /// The session_key does not decode to 16 bytes.
    #[error("session_key must be base64 of 16 bytes")]
    InvalidSessionKey,
    /// The iv does not decode to 16 bytes.
    #[error("iv must be base64 of 16 bytes")]
    InvalidIv,
    /// The ciphertext is empty or not a whole number of 16-byte blocks.
    #[error("encrypted_data must be a non-empty multiple of 16 bytes")]
    InvalidCiphertextLength,
    /// The padding was wrong after decryption: almost always the wrong
    /// session_key (the user ran `wx.login` again after the data was made) or
    /// a mismatched iv.
    #[error(
        "decryption failed: the session_key is not the one this data was encrypted with (wx.login probably ran again after the data was obtained), or the iv does not belong to it"
    )]
    WrongKey,
    /// The plaintext is not a JSON object: a wrong key that passed the
    /// padding check by chance, or corrupted input.
    #[error(
        "the decrypted data is not JSON: the session_key is probably stale (wx.login ran again) or the input was altered"
    )]
    NotJson,
    /// The plaintext has no `watermark.appid`.
    #[error("the decrypted data has no watermark.appid")]
    MissingWatermark,
    /// The watermark names another app: the payload was made for a different
    /// mini program.
    #[error("the data was made for another app (watermark appid {found})")]
    WatermarkMismatch {
        /// The appid in the watermark.
        found: String,
    },
    /// The rawData signature does not match.
    #[error("the raw_data signature does not match the session_key")]
    SignatureMismatch,
}

/// Decodes base64 as it reaches servers in practice: a `+` that travelled
/// through a URL or form unencoded arrives as a space, and long values are
/// sometimes wrapped over lines.
pub fn decode_base64_lenient(input: &str, field: &'static str) -> Result<Vec<u8>, DecryptError> {
    let cleaned: String = input
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n' | '\t'))
        .map(|c| if c == ' ' { '+' } else { c })
        .collect();
    STANDARD
        .decode(cleaned)
        .map_err(|_| DecryptError::InvalidBase64 { field })
}

fn key_bytes(session_key: &SessionKey) -> Result<[u8; 16], DecryptError> {
    let raw = decode_base64_lenient(session_key.expose(), "session_key")?;
    raw.try_into().map_err(|_| DecryptError::InvalidSessionKey)
}

fn iv_bytes(iv: &str) -> Result<[u8; 16], DecryptError> {
    let raw = decode_base64_lenient(iv, "iv")?;
    raw.try_into().map_err(|_| DecryptError::InvalidIv)
}

/// Decrypts `encryptedData` to its plaintext bytes, without interpreting them.
pub fn decrypt(
    session_key: &SessionKey,
    encrypted_data: &str,
    iv: &str,
) -> Result<Vec<u8>, DecryptError> {
    let key = key_bytes(session_key)?;
    let iv = iv_bytes(iv)?;
    let ciphertext = decode_base64_lenient(encrypted_data, "encrypted_data")?;
    if ciphertext.is_empty() || ciphertext.len() % 16 != 0 {
        return Err(DecryptError::InvalidCiphertextLength);
    }
    cbc::Decryptor::<Aes128>::new(&key.into(), &iv.into())
        .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext)
        .map_err(|_| DecryptError::WrongKey)
}

/// Decrypts `encryptedData`, parses it as a JSON object and checks that its
/// watermark names `expected_appid`. This is the call a backend wants: a
/// payload that fails any step is not trusted.
pub fn decrypt_verified(
    session_key: &SessionKey,
    encrypted_data: &str,
    iv: &str,
    expected_appid: &str,
) -> Result<Value, DecryptError> {
    let plain = decrypt(session_key, encrypted_data, iv)?;
    let value: Value = serde_json::from_slice(&plain).map_err(|_| DecryptError::NotJson)?;
    if !value.is_object() {
        return Err(DecryptError::NotJson);
    }
    match value.pointer("/watermark/appid").and_then(Value::as_str) {
        None => Err(DecryptError::MissingWatermark),
        Some(appid) if appid == expected_appid => Ok(value),
        Some(found) => Err(DecryptError::WatermarkMismatch {
            found: found.to_owned(),
        }),
    }
}

/// Encrypts a payload as WeChat does for `encryptedData`: AES-128-CBC,
/// PKCS#7, both results base64. Used by the simulator and by tests; a backend
/// never needs it.
pub fn encrypt(
    session_key: &SessionKey,
    iv: &[u8; 16],
    plaintext: &[u8],
) -> Result<String, DecryptError> {
    let key = key_bytes(session_key)?;
    let ciphertext = cbc::Encryptor::<Aes128>::new(&key.into(), iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    Ok(STANDARD.encode(ciphertext))
}

/// `sha1(raw_data + session_key)` as lowercase hex: the signature that
/// `wx.getUserInfo` sends beside `rawData`.
pub fn raw_data_signature(raw_data: &str, session_key: &SessionKey) -> String {
    let mut hasher = Sha1::new();
    hasher.update(raw_data.as_bytes());
    hasher.update(session_key.expose().as_bytes());
    hex::encode(hasher.finalize())
}

/// Checks a rawData signature in constant time (hex case ignored).
pub fn verify_raw_data_signature(
    raw_data: &str,
    session_key: &SessionKey,
    signature: &str,
) -> Result<(), DecryptError> {
    let expected = raw_data_signature(raw_data, session_key);
    if constant_time_eq_hex(&expected, signature) {
        Ok(())
    } else {
        Err(DecryptError::SignatureMismatch)
    }
}

/// `hmac_sha256(session_key, message)` as lowercase hex, with the session_key's
/// base64 *text* as the HMAC key (not its decoded bytes). `checksession` and
/// `resetusersessionkey` sign the empty string.
pub fn login_state_signature(session_key: &SessionKey, message: &[u8]) -> String {
    // HMAC accepts keys of any length, so the error branch is unreachable; an
    // empty result never verifies (see `constant_time_eq_hex`).
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(session_key.expose().as_bytes()) else {
        return String::new();
    };
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a login-state signature in constant time (hex case ignored).
pub fn verify_login_state_signature(
    session_key: &SessionKey,
    message: &[u8],
    signature: &str,
) -> bool {
    constant_time_eq_hex(&login_state_signature(session_key, message), signature)
}

/// Compares a lowercase hex string we computed with one we were given,
/// ignoring the given one's case, in time independent of where they differ.
fn constant_time_eq_hex(expected_lower: &str, given: &str) -> bool {
    let given = given.trim().to_ascii_lowercase();
    !expected_lower.is_empty() && bool::from(expected_lower.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Official WeChat demo vector (shared/wechat-api.md §4b).
    const APPID: &str = "wx4f4bc4dec97d474b";
    const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
    const PLAIN: &str = r#"{"openId":"oGZUI0egBJY1zhBYw2KhdUfwVJJE","nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0","unionId":"ocMvos6NjeKLIBqg5Mr9QjxrP1FA","watermark":{"timestamp":1477314187,"appid":"wx4f4bc4dec97d474b"}}"#;

    fn key() -> SessionKey {
        SessionKey::new(KEY)
    }

    #[test]
    fn official_vector_decrypts_exactly() {
        let plain = decrypt(&key(), DATA, IV).unwrap();
        assert_eq!(plain.len(), 393);
        assert_eq!(std::str::from_utf8(&plain).unwrap(), PLAIN);
        assert_eq!(
            hex::encode(Sha256::digest(&plain)),
            "3237d8a5dbd413523c194882c7156544d8a06e2afcc97383cc300c17bd09391b"
        );
    }

    #[test]
    fn official_vector_verifies_watermark() {
        let v = decrypt_verified(&key(), DATA, IV, APPID).unwrap();
        assert_eq!(v["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
        assert_eq!(v["unionId"], "ocMvos6NjeKLIBqg5Mr9QjxrP1FA");
        assert_eq!(
            decrypt_verified(&key(), DATA, IV, "wx0000000000000000"),
            Err(DecryptError::WatermarkMismatch {
                found: APPID.into()
            })
        );
    }

    #[test]
    fn encrypt_reproduces_the_official_ciphertext() {
        let iv: [u8; 16] = hex::decode("afb0575ca90b6fcaab48d9f4e67d2a88")
            .unwrap()
            .try_into()
            .unwrap();
        assert_eq!(encrypt(&key(), &iv, PLAIN.as_bytes()).unwrap(), DATA);
    }

    #[test]
    fn plus_turned_into_space_is_tolerated() {
        let spaced = DATA.replace('+', " ");
        let wrapped = format!("{}\n{}", &spaced[..100], &spaced[100..]);
        assert_eq!(decrypt(&key(), &wrapped, IV).unwrap(), PLAIN.as_bytes());
    }

    #[test]
    fn wrong_key_is_a_clear_error() {
        let other = SessionKey::new("HyVFkGl5F5OQWJZZaNzBBg==");
        let err = decrypt_verified(&other, DATA, IV, APPID).unwrap_err();
        assert!(
            matches!(err, DecryptError::WrongKey | DecryptError::NotJson),
            "{err:?}"
        );
        assert!(err.to_string().contains("wx.login"));
    }

    #[test]
    fn bad_inputs_are_named() {
        assert_eq!(
            decrypt(&SessionKey::new("short"), DATA, IV),
            Err(DecryptError::InvalidBase64 {
                field: "session_key"
            })
        );
        assert_eq!(
            decrypt(&SessionKey::new("AAAA"), DATA, IV),
            Err(DecryptError::InvalidSessionKey)
        );
        assert_eq!(decrypt(&key(), DATA, "AAAA"), Err(DecryptError::InvalidIv));
        assert_eq!(
            decrypt(&key(), "AAAA", IV),
            Err(DecryptError::InvalidCiphertextLength)
        );
        assert_eq!(
            decrypt(&key(), "", IV),
            Err(DecryptError::InvalidCiphertextLength)
        );
        assert_eq!(
            decrypt(&key(), "!!!", IV),
            Err(DecryptError::InvalidBase64 {
                field: "encrypted_data"
            })
        );
    }

    #[test]
    fn raw_data_signature_vector() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let k = SessionKey::new("HyVFkGl5F5OQWJZZaNzBBg==");
        assert_eq!(
            raw_data_signature(raw, &k),
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        );
        assert!(
            verify_raw_data_signature(raw, &k, "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C").is_ok()
        );
        assert_eq!(
            verify_raw_data_signature(
                &format!("{raw} "),
                &k,
                "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
            ),
            Err(DecryptError::SignatureMismatch)
        );
        assert!(verify_raw_data_signature(raw, &k, "").is_err());
    }

    #[test]
    fn login_state_signature_vectors() {
        // Official example: key text, not decoded bytes.
        let k = SessionKey::new("o0q0otL8aEzpcZL/FT9WsQ==");
        assert_eq!(
            login_state_signature(&k, br#"{"foo":"bar"}"#),
            "654571f79995b2ce1e149e53c0a33dc39c0a74090db514261454e8dbe432aa0b"
        );
        // checksession: the empty string signed with the demo key.
        assert_eq!(
            login_state_signature(&key(), b""),
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        );
        assert!(verify_login_state_signature(
            &key(),
            b"",
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        ));
        assert!(!verify_login_state_signature(
            &key(),
            b"x",
            "7154f9f8b4b76b92f541cbf0e37d48840fa06e5e42da92a6f80168a1516a4735"
        ));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn decrypt_never_panics(key in ".{0,40}", data in ".{0,200}", iv in ".{0,40}") {
                let _ = decrypt_verified(&SessionKey::new(key), &data, &iv, APPID);
            }

            #[test]
            fn decrypt_never_panics_on_valid_base64(key in proptest::collection::vec(any::<u8>(), 0..24),
                                                    iv in proptest::collection::vec(any::<u8>(), 0..24),
                                                    data in proptest::collection::vec(any::<u8>(), 0..96)) {
                let _ = decrypt_verified(&SessionKey::new(STANDARD.encode(key)), &STANDARD.encode(data), &STANDARD.encode(iv), APPID);
            }

            #[test]
            fn round_trips(key in any::<[u8; 16]>(), iv in any::<[u8; 16]>(), text in ".{0,300}") {
                let k = SessionKey::new(STANDARD.encode(key));
                let doc = serde_json::json!({"text": text, "watermark": {"appid": APPID, "timestamp": 1}});
                let plain = serde_json::to_vec(&doc).unwrap();
                let data = encrypt(&k, &iv, &plain).unwrap();
                prop_assert_eq!(decrypt_verified(&k, &data, &STANDARD.encode(iv), APPID).unwrap(), doc);
            }
        }
    }
}
