//! The caller's profile: small fields (nickname, avatar_url, …) merged by
//! PATCH with JSON merge-patch rules (a `null` removes a field).

use serde_json::{Map, Value};

use super::Data;
use crate::error::{Error, Result};
use crate::vocab::Owner;

/// Fields a profile (and so one patch) holds at most.
pub const MAX_FIELDS: usize = 64;
/// Characters in a profile field's name, at most.
pub const MAX_KEY: usize = 64;

impl Data {
    /// Applies `patch` to the caller's profile. The merge runs inside the
    /// store's write transaction, so concurrent patches of different fields
    /// all survive.
    pub async fn update_profile(&self, owner: Owner<'_>, patch: Map<String, Value>) -> Result<()> {
        let max_bytes = self.limits.profile_bytes;
        if patch.len() > MAX_FIELDS {
            return Err(Error::InvalidRequest(format!(
                "`profile` sets {} fields; a profile holds at most {MAX_FIELDS}",
                patch.len()
            )));
        }
        for key in patch.keys() {
            if key.is_empty() || key.chars().count() > MAX_KEY {
                let shown: String = key.chars().take(16).collect();
                let more = if shown.len() < key.len() { "…" } else { "" };
                return Err(Error::InvalidRequest(format!(
                    "`profile.{shown}{more}`: profile field names must be 1 to {MAX_KEY} characters"
                )));
            }
        }
        let gone = || Error::Unauthorized("the user of this token no longer exists");
        // The token's user, in the token's app (as every route checks).
        self.store
            .user(owner.user_id)
            .await?
            .filter(|u| u.appid == owner.appid)
            .ok_or_else(gone)?;
        self.store
            .modify_profile(
                owner.user_id,
                Box::new(move |current| merge(current, &patch, max_bytes)),
            )
            .await?
            .map(|_| ())
            .ok_or_else(gone)
    }
}

/// JSON merge patch of a flat profile, with the size rules.
pub fn merge(current: &str, patch: &Map<String, Value>, max_bytes: usize) -> Result<String> {
    let mut profile: Map<String, Value> = serde_json::from_str(current).unwrap_or_default();
    for (k, v) in patch {
        if v.is_null() {
            profile.remove(k);
        } else {
            profile.insert(k.clone(), v.clone());
        }
    }
    if profile.len() > MAX_FIELDS {
        // The patch itself was fine: what is stored already leaves no room.
        return Err(Error::LimitExceeded(format!(
            "the profile would hold {} fields; it holds at most {MAX_FIELDS} (set fields to null to remove them)",
            profile.len()
        )));
    }
    let text = Value::Object(profile).to_string();
    if text.len() > max_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "the profile would be {} bytes; the limit is {max_bytes}",
            text.len()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_rules() {
        let patch = json!({"a": 1, "b": null})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            merge(r#"{"b":2,"c":3}"#, &patch, 100).ok().as_deref(),
            Some(r#"{"a":1,"c":3}"#)
        );
        let big = json!({"a": "x".repeat(200)})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(matches!(
            merge("{}", &big, 100),
            Err(Error::PayloadTooLarge(_))
        ));
    }
}
