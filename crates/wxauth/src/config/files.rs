//! `[files]`: where uploaded files' bytes go, and how big they may be.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use wechat_miniapp::SecretText;

use super::{ConfigError, bad, env_var};

/// Uploaded files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Where the bytes go: `file://PATH`, a folder (relative to the working
    /// directory unless absolute; `wxauth dev` uses its data folder), or
    /// `s3://BUCKET/PREFIX?endpoint=URL&region=NAME[&style=virtual]`, any
    /// S3-compatible object store (what several instances share).
    pub url: String,
    /// The S3 access key id, written in the file. Prefer `access_key_env`.
    pub access_key: Option<String>,
    /// The variable holding the S3 access key id (`AWS_ACCESS_KEY_ID`
    /// unless given, or unless `access_key` is).
    pub access_key_env: Option<String>,
    /// The S3 secret access key, written in the file. Prefer
    /// `secret_key_env`.
    pub secret_key: Option<SecretText>,
    /// The variable holding the S3 secret access key
    /// (`AWS_SECRET_ACCESS_KEY` unless given, or unless `secret_key` is).
    pub secret_key_env: Option<String>,
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
    /// How old stored bytes without a file record must be before the
    /// sweep removes them, seconds (longer than any upload takes).
    pub orphan_grace_secs: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            url: "file://wxauth-files".into(),
            access_key: None,
            access_key_env: None,
            secret_key: None,
            secret_key_env: None,
            max_bytes: 10 * 1024 * 1024,
            bytes_per_user: 100 * 1024 * 1024,
            url_ttl_secs: 3600,
            upload_timeout_ms: 120_000,
            orphan_grace_secs: 24 * 3600,
        }
    }
}

/// Where the bytes are kept, checked.
#[derive(Debug, Clone)]
pub enum FileStore {
    /// A folder on the local disk.
    Local {
        /// The folder.
        root: PathBuf,
    },
    /// An S3-compatible object store.
    S3(S3Store),
}

/// An S3-compatible bucket (Tencent COS, MinIO, RustFS, AWS S3...).
#[derive(Debug, Clone)]
pub struct S3Store {
    /// The bucket.
    pub bucket: String,
    /// The folder inside it (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// The service's URL; None for AWS S3 itself.
    pub endpoint: Option<String>,
    /// The signing region (`us-east-1` unless given).
    pub region: String,
    /// `https://BUCKET.host/` requests instead of `https://host/BUCKET/`
    /// (what Tencent COS and AWS S3 prefer; MinIO and RustFS take both).
    pub virtual_hosted: bool,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: SecretText,
}

/// `[files]`, checked.
#[derive(Debug, Clone)]
pub struct FileSettings {
    /// Where the bytes go.
    pub store: FileStore,
    /// The largest file, bytes.
    pub max_bytes: u64,
    /// Bytes one user may keep in files.
    pub bytes_per_user: u64,
    /// A private file's URL lifetime.
    pub url_ttl: Duration,
    /// An upload's time limit.
    pub upload_timeout: Duration,
    /// How old unrecorded bytes must be before the sweep removes them.
    pub orphan_grace: Duration,
}

const URL_FORMS: &str = "use file://PATH (a folder) or s3://BUCKET/PREFIX?endpoint=URL&region=NAME";

impl FilesConfig {
    /// Checks the store's URL (reading the S3 keys from their variables)
    /// and the limits.
    pub(super) fn check(&self) -> Result<FileSettings, ConfigError> {
        let store = if let Some(path) = self.url.strip_prefix("file://") {
            if path.trim().is_empty() {
                return Err(bad(format!("files.url: {:?}; {URL_FORMS}", self.url)));
            }
            FileStore::Local {
                root: PathBuf::from(path),
            }
        } else if let Some(rest) = self.url.strip_prefix("s3://") {
            FileStore::S3(self.s3(rest)?)
        } else {
            return Err(bad(format!("files.url: {:?}; {URL_FORMS}", self.url)));
        };
        if self.max_bytes == 0 || self.bytes_per_user == 0 {
            return Err(bad("files: max_bytes and bytes_per_user must be positive"));
        }
        if self.url_ttl_secs == 0 || self.upload_timeout_ms == 0 {
            return Err(bad(
                "files: url_ttl_secs and upload_timeout_ms must be positive",
            ));
        }
        let orphan_grace = Duration::from_secs(self.orphan_grace_secs);
        let upload_timeout = Duration::from_millis(self.upload_timeout_ms);
        if orphan_grace <= upload_timeout {
            return Err(bad(
                "files: orphan_grace_secs must be longer than upload_timeout_ms, \
                 or the sweep could remove an upload still being written",
            ));
        }
        Ok(FileSettings {
            store,
            max_bytes: self.max_bytes,
            bytes_per_user: self.bytes_per_user,
            url_ttl: Duration::from_secs(self.url_ttl_secs),
            upload_timeout,
            orphan_grace,
        })
    }

    /// `BUCKET/PREFIX?endpoint=…&region=…&style=…`, with the keys.
    fn s3(&self, rest: &str) -> Result<S3Store, ConfigError> {
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(bad(format!(
                "files.url: {bucket:?} is not a bucket name (3-63 lower-case letters, digits, '-' or '.'); {URL_FORMS}"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
            return Err(bad(format!(
                "files.url: the prefix {prefix:?} has an empty, '.' or '..' segment"
            )));
        }
        let mut endpoint = None;
        let mut region = None;
        let mut virtual_hosted = false;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| bad(format!("files.url: the part after '?' does not parse: {e}")))?;
        for (name, value) in pairs {
            match name.as_str() {
                "endpoint" => {
                    if !(value.starts_with("http://") || value.starts_with("https://")) {
                        return Err(bad(format!(
                            "files.url: endpoint {value:?} must be an http:// or https:// URL"
                        )));
                    }
                    endpoint = Some(value.trim_end_matches('/').to_owned());
                }
                "region" => region = Some(value),
                "style" => {
                    virtual_hosted = match value.as_str() {
                        "virtual" => true,
                        "path" => false,
                        other => {
                            return Err(bad(format!(
                                "files.url: style {other:?}; use style=path or style=virtual"
                            )));
                        }
                    }
                }
                other => {
                    return Err(bad(format!(
                        "files.url: unknown parameter {other:?}; known: endpoint, region, style"
                    )));
                }
            }
        }
        let access_key = match (&self.access_key, &self.access_key_env) {
            (Some(key), None) => key.clone(),
            (None, var) => env_var(
                var.as_deref().unwrap_or("AWS_ACCESS_KEY_ID"),
                "files.access_key_env",
            )?,
            (Some(_), Some(_)) => {
                return Err(bad(
                    "files: give at most one of access_key or access_key_env",
                ));
            }
        };
        let secret_key = match (&self.secret_key, &self.secret_key_env) {
            (Some(key), None) => key.expose().to_owned(),
            (None, var) => env_var(
                var.as_deref().unwrap_or("AWS_SECRET_ACCESS_KEY"),
                "files.secret_key_env",
            )?,
            (Some(_), Some(_)) => {
                return Err(bad(
                    "files: give at most one of secret_key or secret_key_env",
                ));
            }
        };
        if access_key.trim().is_empty() || secret_key.trim().is_empty() {
            return Err(bad(
                "files: the S3 access key and secret key must not be empty",
            ));
        }
        Ok(S3Store {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".into()),
            virtual_hosted,
            access_key,
            secret_key: SecretText::new(secret_key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(url: &str) -> Result<FileSettings, ConfigError> {
        FilesConfig {
            url: url.into(),
            access_key: Some("ak".into()),
            secret_key: Some(SecretText::new("sk")),
            ..FilesConfig::default()
        }
        .check()
    }

    #[test]
    fn s3_urls_name_bucket_prefix_endpoint_region_and_style() {
        let settings = s3(
            "s3://my-bucket/a/b/?endpoint=https%3A%2F%2Fcos.ap-shanghai.myqcloud.com/&region=ap-shanghai&style=virtual",
        )
        .unwrap();
        let FileStore::S3(store) = settings.store else {
            panic!("not S3");
        };
        assert_eq!(store.bucket, "my-bucket");
        assert_eq!(store.prefix, "a/b");
        assert_eq!(
            store.endpoint.as_deref(),
            Some("https://cos.ap-shanghai.myqcloud.com")
        );
        assert_eq!(store.region, "ap-shanghai");
        assert!(store.virtual_hosted);
        let FileStore::S3(plain) = s3("s3://bucket").unwrap().store else {
            panic!("not S3");
        };
        assert_eq!(
            (plain.prefix.as_str(), plain.region.as_str(), plain.endpoint),
            ("", "us-east-1", None)
        );
    }

    #[test]
    fn bad_s3_urls_say_what_is_wrong() {
        for (url, says) in [
            ("s3://B/x", "bucket name"),
            ("s3://bucket/a/../b", "'..'"),
            (
                "s3://bucket?endpoint=cos.example.com",
                "http:// or https://",
            ),
            ("s3://bucket?style=sideways", "style=path"),
            ("s3://bucket?secret=x", "unknown parameter"),
            ("ftp://bucket", "file://PATH"),
        ] {
            let e = s3(url).unwrap_err().to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = FilesConfig {
            url: "s3://bucket".into(),
            access_key_env: Some("WXAUTH_TEST_UNSET_VARIABLE_1".into()),
            secret_key: Some(SecretText::new("sk")),
            ..FilesConfig::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("files.access_key_env") && e.contains("is not set"),
            "{e}"
        );
    }

    #[test]
    fn the_sweep_waits_longer_than_an_upload_may_take() {
        let e = FilesConfig {
            upload_timeout_ms: 5000,
            orphan_grace_secs: 5,
            ..FilesConfig::default()
        }
        .check()
        .unwrap_err()
        .to_string();
        assert!(e.contains("orphan_grace_secs"), "{e}");
    }
}
