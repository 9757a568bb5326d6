//! `[content_check]` and `[[collections]] check_text`: which texts users
//! write go through WeChat's content check (msgSecCheck v2) before they
//! are stored, and what a doubtful verdict or an unreachable WeChat does.
//! WeChat's review requires mini programs with user-generated content to
//! check it (docs/wechat-platform.md §2).

use std::collections::HashMap;

use serde::Deserialize;

use super::{Config, ConfigError, bad};

/// What a `review` verdict (doubtful: a person should look) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnReview {
    /// Store it, and flag it for the operator: an audit entry naming
    /// the document and field (`content_check review`).
    #[default]
    Flag,
    /// Refuse it as a risky text is refused (422 `content_rejected`).
    Refuse,
}

/// What a write does when WeChat cannot give a verdict (unreachable,
/// busy, or the user has not opened the mini program for two hours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Refuse the write (503 `upstream_unavailable`, to retry): nothing
    /// unchecked is stored (fail-closed).
    #[default]
    Refuse,
    /// Store it unchecked, flagged for the operator (`content_check
    /// unchecked` in the audit log) (fail-open).
    Flag,
}

/// `[content_check]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentCheckConfig {
    /// Whether the profile's `nickname` (PATCH /v1/me) is checked (scene 1).
    pub nickname: bool,
    /// Whether avatars and images are checked (mediaCheckAsync): each is
    /// `pending`, seen by its owner only, until WeChat pushes the verdict.
    /// Needs message push and a URL WeChat can fetch from (`public_url`).
    pub images: bool,
    /// What a `review` verdict does.
    pub on_review: OnReview,
    /// What a write does when WeChat gives no verdict.
    pub on_unavailable: OnUnavailable,
}

impl Default for ContentCheckConfig {
    fn default() -> Self {
        Self {
            nickname: true,
            images: false,
            on_review: OnReview::default(),
            on_unavailable: OnUnavailable::default(),
        }
    }
}

/// The texts one collection's writes have checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFields {
    /// Field paths (`title`, `post.body`), as written and split at dots.
    pub paths: Vec<(String, Vec<String>)>,
    /// msgSecCheck's scene: 1 profile, 2 comment, 3 forum, 4 social log.
    pub scene: u8,
}

/// Content checks, resolved.
#[derive(Debug, Clone, Default)]
pub struct ContentCheckSettings {
    /// Collections with `check_text`, by name.
    pub collections: HashMap<String, CheckedFields>,
    /// See [`ContentCheckConfig::nickname`].
    pub nickname: bool,
    /// See [`ContentCheckConfig::images`].
    pub images: bool,
    /// See [`ContentCheckConfig::on_review`].
    pub on_review: OnReview,
    /// See [`ContentCheckConfig::on_unavailable`].
    pub on_unavailable: OnUnavailable,
}

/// The fields one collection may have checked (each is a WeChat call per write).
pub const MAX_CHECKED_FIELDS: usize = 8;

impl Config {
    /// Checks `[content_check]` and each collection's `check_text`.
    pub(super) fn check_content(&self) -> Result<ContentCheckSettings, ConfigError> {
        let mut collections = HashMap::new();
        for (i, c) in self.collections.iter().enumerate() {
            let path = format!("collections[{i}]");
            if c.check_text.is_empty() {
                if c.check_scene.is_some() {
                    return Err(bad(format!("{path}.check_scene: set only with check_text")));
                }
                continue;
            }
            if c.check_text.len() > MAX_CHECKED_FIELDS {
                return Err(bad(format!(
                    "{path}.check_text: at most {MAX_CHECKED_FIELDS} fields"
                )));
            }
            let mut paths: Vec<(String, Vec<String>)> = Vec::new();
            for field in &c.check_text {
                let segments = crate::vocab::query::parse_path(field)
                    .map_err(|e| bad(format!("{path}.check_text: {e}")))?;
                if !paths.iter().any(|(_, s)| *s == segments) {
                    paths.push((field.clone(), segments));
                }
            }
            let scene = c.check_scene.unwrap_or(DEFAULT_SCENE);
            if !(1..=4).contains(&scene) {
                return Err(bad(format!(
                    "{path}.check_scene: 1 (profile), 2 (comment), 3 (forum) or 4 (social log)"
                )));
            }
            collections.insert(c.name.clone(), CheckedFields { paths, scene });
        }
        Ok(ContentCheckSettings {
            collections,
            nickname: self.content_check.nickname,
            images: self.content_check.images,
            on_review: self.content_check.on_review,
            on_unavailable: self.content_check.on_unavailable,
        })
    }
}

/// The scene of collections that name none: 3, forum (论坛), WeChat's
/// scene for posts others read.
pub const DEFAULT_SCENE: u8 = 3;
