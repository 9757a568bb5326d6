//! `[[collections]]`: collections with another access mode than
//! `private`, or indexes.

use serde::Deserialize;

use super::{Config, ConfigError, bad};
pub use crate::vocab::collections::{Access, CollectionRule};

/// One `[[collections]]` entry.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CollectionConfig {
    /// The collection's name (`[a-z0-9_-]{1,64}`).
    pub name: String,
    /// `private` (the default), `public_read` or `admin_write`.
    #[serde(default)]
    pub access: Access,
    /// Fields to index, e.g. `["status", "-score"]` (`-`: descending).
    #[serde(default)]
    pub indexes: Vec<String>,
    /// Text fields WeChat's content check (msgSecCheck) must pass before
    /// a user's create or replace is stored, e.g. `["title", "body"]`.
    #[serde(default)]
    pub check_text: Vec<String>,
    /// msgSecCheck's scene for them: 1 profile, 2 comment, 3 forum (the
    /// default), 4 social log.
    #[serde(default)]
    pub check_scene: Option<u8>,
}

/// Indexes one collection may declare (each costs every write to it).
pub const MAX_INDEXES_PER_COLLECTION: usize = 8;

impl Config {
    /// Checks `[[collections]]` alone (`wxauth migrate` needs no secrets).
    pub fn check_collections(&self) -> Result<Vec<CollectionRule>, ConfigError> {
        let mut rules: Vec<CollectionRule> = Vec::new();
        for (i, c) in self.collections.iter().enumerate() {
            let path = format!("collections[{i}]");
            crate::vocab::check_collection(&c.name).map_err(|_| {
                bad(format!(
                    "{path}.name: {:?} must match [a-z0-9_-]{{1,64}}",
                    c.name
                ))
            })?;
            if rules.iter().any(|r| r.name == c.name) {
                return Err(bad(format!("{path}.name: {} is configured twice", c.name)));
            }
            let access = c.access;
            if c.indexes.len() > MAX_INDEXES_PER_COLLECTION {
                return Err(bad(format!(
                    "{path}.indexes: at most {MAX_INDEXES_PER_COLLECTION} per collection"
                )));
            }
            let mut indexes: Vec<(Vec<String>, bool)> = Vec::new();
            for spec in &c.indexes {
                let (text, descending) = match spec.strip_prefix('-') {
                    Some(rest) => (rest, true),
                    None => (spec.as_str(), false),
                };
                if ["id", "owner", "created_at", "updated_at"].contains(&text) {
                    return Err(bad(format!(
                        "{path}.indexes: {text} is a built-in field and always indexed"
                    )));
                }
                let segments = crate::vocab::query::parse_path(text)
                    .map_err(|e| bad(format!("{path}.indexes: {e}")))?;
                if !indexes.contains(&(segments.clone(), descending)) {
                    indexes.push((segments, descending));
                }
            }
            rules.push(CollectionRule {
                name: c.name.clone(),
                access,
                indexes,
            });
        }
        Ok(rules)
    }
}
