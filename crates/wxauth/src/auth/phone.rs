//! Phone binding and decryption of WeChat's encrypted payloads, both on the
//! server with the user's session_key or the app's access token.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use wechat_miniapp::crypto::{decrypt_verified, verify_raw_data_signature};
use wechat_miniapp::{DecryptError, PhoneCode, SessionKey};

use super::sessions::session_key_aad;
use super::upstream::{self, Call};
use super::{Auth, Caller};
use crate::error::{Error, Result};
use crate::store::UserRecord;

/// A bound phone number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    /// With the country code for numbers outside mainland China.
    pub phone_number: String,
    /// Without the country code.
    pub pure_phone_number: String,
    /// The country code.
    pub country_code: String,
}

pub(super) fn phone_aad(user_id: &str) -> Vec<u8> {
    format!("phone\0{user_id}").into_bytes()
}

/// The namespace of phone lookup tags: per app, so one app's tag does not
/// find another app's user.
pub(super) fn phone_tag_purpose(appid: &str) -> String {
    format!("phone\0{appid}")
}

const STALE_KEY_HINT: &str = "the user's session_key changed since this data was produced (wx.login ran again after the data was obtained): call wx.login, log in with the new code, then obtain the data again";

impl Auth {
    /// Exchanges a phone-button code for the number and stores it (sealed).
    pub async fn bind_phone(&self, caller: &Caller, code: &str) -> Result<PhoneNumber> {
        let code = code.trim();
        if code.is_empty() || code.len() > 256 {
            return Err(Error::InvalidRequest(
                "code must be 1 to 256 characters".into(),
            ));
        }
        let user = self.user_record(caller).await?;
        let code = PhoneCode::new(code);
        let call = self.wechat_tokens.with_token(&user.appid, |token| {
            let (client, code, openid) = (self.wechat.clone(), code.clone(), user.openid.clone());
            async move {
                client
                    .get_user_phone_number(&token, &code, Some(&openid))
                    .await
            }
        });
        let info = tokio::time::timeout(self.upstream_deadline, call)
            .await
            .map_err(|_| upstream::unavailable("WeChat did not answer in time"))?
            .map_err(|e| upstream::map(e, Call::Phone, &user.appid))?;
        if info.watermark.appid != user.appid {
            return Err(Error::InvalidCode(
                "the phone code was issued to another app".into(),
            ));
        }
        let phone = PhoneNumber {
            phone_number: info.phone_number,
            pure_phone_number: info.pure_phone_number,
            country_code: info.country_code,
        };
        let sealed = self.sealer.seal(
            &serde_json::to_vec(&phone).map_err(Error::internal)?,
            &phone_aad(&user.id),
        )?;
        let tag = self
            .sealer
            .lookup_tag(&phone_tag_purpose(&user.appid), &phone.pure_phone_number);
        self.store.set_phone(&user.id, sealed, tag).await?;
        Ok(phone)
    }

    /// The user's bound phone number, if any.
    pub(super) fn phone_of(&self, user: &UserRecord) -> Result<Option<PhoneNumber>> {
        let Some(sealed) = &user.phone_enc else {
            return Ok(None);
        };
        let plain = self.sealer.open(sealed, &phone_aad(&user.id))?;
        serde_json::from_slice(&plain)
            .map(Some)
            .map_err(Error::internal)
    }

    fn session_key_of(&self, user: &UserRecord) -> Result<SessionKey> {
        let plain = self.sealer.open(
            &user.session_key_enc,
            &session_key_aad(&user.appid, &user.openid),
        )?;
        String::from_utf8(plain)
            .map(SessionKey::new)
            .map_err(Error::internal)
    }

    /// Decrypts `encryptedData` with the user's current session_key and
    /// returns it after checking its watermark names the user's app. When
    /// `raw_data` and `signature` are given, the signature is checked first.
    pub async fn decrypt(
        &self,
        caller: &Caller,
        encrypted_data: &str,
        iv: &str,
        signed: Option<(&str, &str)>,
    ) -> Result<Value> {
        let user = self.user_record(caller).await?;
        let key = self.session_key_of(&user)?;
        if let Some((raw_data, signature)) = signed {
            verify_raw_data_signature(raw_data, &key, signature).map_err(|_| {
                Error::DecryptFailed(format!(
                    "the signature does not match raw_data: {STALE_KEY_HINT}"
                ))
            })?;
        }
        decrypt_verified(&key, encrypted_data, iv, &user.appid).map_err(|e| match e {
            DecryptError::InvalidBase64 { field } => {
                Error::InvalidRequest(format!("{field} is not valid base64"))
            }
            DecryptError::InvalidIv => {
                Error::InvalidRequest("iv must be base64 of 16 bytes".into())
            }
            DecryptError::InvalidCiphertextLength => Error::InvalidRequest(
                "encrypted_data must be base64 of a non-empty multiple of 16 bytes".into(),
            ),
            DecryptError::WrongKey | DecryptError::NotJson => {
                Error::DecryptFailed(format!("the data could not be decrypted: {STALE_KEY_HINT}"))
            }
            DecryptError::WatermarkMismatch { found } => Error::DecryptFailed(format!(
                "the data was made for another app ({found}), not for {}",
                user.appid
            )),
            DecryptError::MissingWatermark => {
                Error::DecryptFailed("the decrypted data has no watermark".into())
            }
            DecryptError::InvalidSessionKey | DecryptError::SignatureMismatch => {
                Error::internal_from("decrypting with the stored session_key", e)
            }
        })
    }
}
