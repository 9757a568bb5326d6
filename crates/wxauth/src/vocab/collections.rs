//! Collections: their names and who reads and writes them. Checked in
//! `config` (declared collections), decided on in `data` (every request).

use crate::error::{Error, Result};

/// Who reads and writes a collection's documents (`access` of a
/// `[[collections]]` entry: `private`, `public_read` or `admin_write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Only the owner reads and writes (the default).
    #[default]
    Private,
    /// Every signed-in user of the app reads; only the owner writes.
    PublicRead,
    /// Every signed-in user of the app reads; only the server side writes.
    AdminWrite,
}

impl Access {
    /// Whether other users of the app read the collection.
    pub fn shared(self) -> bool {
        self != Access::Private
    }
}

/// A `[[collections]]` entry, checked.
#[derive(Debug, Clone)]
pub struct CollectionRule {
    /// The name.
    pub name: String,
    /// Who reads and writes.
    pub access: Access,
    /// Indexed paths and whether each is descending.
    pub indexes: Vec<(Vec<String>, bool)>,
}

/// Checks a collection name against `[a-z0-9_-]{1,64}`.
pub fn check_collection(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRequest(format!(
            "collection name {:?} must match [a-z0-9_-]{{1,64}}",
            name.chars().take(80).collect::<String>()
        )))
    }
}
