//! `[files]`: where uploaded files' bytes go, and how big they may be.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, bad};

/// Uploaded files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Where the bytes go: `file://PATH`, a folder (relative to the working
    /// directory unless absolute; `wxauth dev` uses its data folder).
    pub url: String,
    /// The largest file, bytes (larger uploads are 413, nothing stored).
    pub max_bytes: u64,
    /// Bytes one user may keep in files (past it 409 `limit_exceeded`).
    pub bytes_per_user: u64,
    /// How long a private file's signed URL works, seconds.
    pub url_ttl_secs: u64,
    /// How long an upload may take from its first byte to its last,
    /// milliseconds (instead of `http.request_timeout_ms`; a stalled body
    /// is still cut off after `http.body_timeout_ms` without a byte).
    pub upload_timeout_ms: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            url: "file://wxauth-files".into(),
            max_bytes: 10 * 1024 * 1024,
            bytes_per_user: 100 * 1024 * 1024,
            url_ttl_secs: 3600,
            upload_timeout_ms: 120_000,
        }
    }
}

/// `[files]`, checked.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// The folder the bytes go in.
    pub root: PathBuf,
    /// The largest file, bytes.
    pub max_bytes: u64,
    /// Bytes one user may keep in files.
    pub bytes_per_user: u64,
    /// A private file's URL lifetime.
    pub url_ttl: Duration,
    /// An upload's time limit.
    pub upload_timeout: Duration,
}

impl FilesConfig {
    /// Checks the store's URL and the limits.
    pub(super) fn check(&self) -> Result<FileSettings, ConfigError> {
        let root = match self.url.strip_prefix("file://") {
            Some(path) if !path.trim().is_empty() => PathBuf::from(path),
            _ => {
                return Err(bad(format!(
                    "files.url: {:?}; use file://PATH (a folder for the files' bytes)",
                    self.url
                )));
            }
        };
        if self.max_bytes == 0 || self.bytes_per_user == 0 {
            return Err(bad("files: max_bytes and bytes_per_user must be positive"));
        }
        if self.url_ttl_secs == 0 || self.upload_timeout_ms == 0 {
            return Err(bad(
                "files: url_ttl_secs and upload_timeout_ms must be positive",
            ));
        }
        Ok(FileSettings {
            root,
            max_bytes: self.max_bytes,
            bytes_per_user: self.bytes_per_user,
            url_ttl: Duration::from_secs(self.url_ttl_secs),
            upload_timeout: Duration::from_millis(self.upload_timeout_ms),
        })
    }
}
