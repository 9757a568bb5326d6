//! Ids derived from a row's old id, the same on every run: what makes an
//! import idempotent without a second pass. A pointer to (class, objectId)
//! becomes the id its row gets, whichever file is read first, and a
//! re-run finds every row it stored before by that id.

use sha2::{Digest, Sha256};

/// A UUID (version 8: application-defined) from SHA-256 of the platform,
/// app, class and old id.
pub fn derived_id(platform: &str, appid: &str, class: &str, legacy_id: &str) -> String {
    let mut h = Sha256::new();
    for part in ["wxauth-import", platform, appid, class, legacy_id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn the_same_row_gets_the_same_id_and_others_differ() {
        let a = derived_id("leancloud", "wx1", "Todo", "5f1a");
        assert_eq!(a, derived_id("leancloud", "wx1", "Todo", "5f1a"));
        let parsed = Uuid::parse_str(&a).unwrap();
        assert_eq!(parsed.get_version_num(), 8);
        for other in [
            derived_id("leancloud", "wx2", "Todo", "5f1a"),
            derived_id("leancloud", "wx1", "Post", "5f1a"),
            derived_id("cloudbase", "wx1", "Todo", "5f1a"),
            // The separator keeps parts apart.
            derived_id("leancloud", "wx1", "Todo5", "f1a"),
        ] {
            assert_ne!(a, other);
        }
    }
}
