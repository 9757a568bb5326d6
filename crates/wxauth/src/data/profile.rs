//! The caller's profile: small fields (nickname, avatar_url, …) merged by
//! PATCH with JSON merge-patch rules (a `null` removes a field).

use serde_json::{Map, Value};

use crate::auth::{Auth, Caller};
use crate::error::{Error, Result};
use crate::store::UserRecord;

const MAX_FIELDS: usize = 64;
const MAX_KEY: usize = 64;

/// Applies `patch` to the caller's profile and returns the updated user.
/// Concurrent patches do not lose each other's fields: each is applied to
/// the latest version (optimistic concurrency, retried).
pub async fn update(
    auth: &Auth,
    caller: &Caller,
    patch: Map<String, Value>,
    max_bytes: usize,
) -> Result<UserRecord> {
    for key in patch.keys() {
        if key.is_empty() || key.len() > MAX_KEY {
            return Err(Error::InvalidRequest(format!(
                "profile field names must be 1 to {MAX_KEY} bytes"
            )));
        }
    }
    for _ in 0..8 {
        let user = auth.user(caller).await?;
        let mut profile: Map<String, Value> =
            serde_json::from_str(&user.profile).unwrap_or_default();
        for (k, v) in &patch {
            if v.is_null() {
                profile.remove(k);
            } else {
                profile.insert(k.clone(), v.clone());
            }
        }
        if profile.len() > MAX_FIELDS {
            return Err(Error::InvalidRequest(format!(
                "a profile holds at most {MAX_FIELDS} fields"
            )));
        }
        let text = Value::Object(profile).to_string();
        if text.len() > max_bytes {
            return Err(Error::PayloadTooLarge(format!(
                "the profile would be {} bytes; the limit is {max_bytes}",
                text.len()
            )));
        }
        if auth
            .store()
            .update_profile(&user.id, text, user.profile_version)
            .await?
        {
            return auth.user(caller).await;
        }
    }
    Err(Error::internal("profile update kept conflicting"))
}
