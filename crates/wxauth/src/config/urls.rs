//! The service's addresses: `database_url`, `redis_url` (which may hold
//! passwords, so they are kept redacted in logs) and `public_url`.

use serde::Deserialize;

use super::{ConfigError, bad};

/// A database (or Redis) URL. It may hold a password, so its `Debug` shows
/// it redacted; `expose()` is for connecting only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL itself, password included: to connect, never to show.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

/// A database URL with any password replaced (in the user-info part and in
/// a `password=` query parameter), for messages and logs.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &base[..scheme_end + 3], &base[at..]),
                None => base.to_owned(),
            }
        }
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let params: Vec<String> = q
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

/// Checks `database_url`'s scheme.
pub(super) fn check_database_url(url: &DatabaseUrl) -> Result<(), ConfigError> {
    let url = url.expose();
    if url.starts_with("sqlite:")
        || url.starts_with("postgres://")
        || url.starts_with("postgresql://")
    {
        Ok(())
    } else {
        Err(bad(format!(
            "database_url: unsupported scheme in {:?}; use sqlite://PATH or postgres://USER@HOST/DB",
            redact_url(url)
        )))
    }
}

/// `redis_url` unless blank, its scheme checked.
pub(super) fn check_redis_url(
    url: Option<&DatabaseUrl>,
) -> Result<Option<DatabaseUrl>, ConfigError> {
    let redis_url = url.filter(|u| !u.expose().trim().is_empty()).cloned();
    if let Some(r) = &redis_url
        && !r.expose().starts_with("redis://")
    {
        return Err(bad(format!(
            "redis_url: unsupported scheme in {:?}; use redis://[:PASSWORD@]HOST:PORT[/DB]",
            r.redacted()
        )));
    }
    Ok(redis_url)
}

/// `public_url` unless blank, without a trailing `/`.
pub(super) fn check_public_url(url: Option<&str>) -> Result<Option<String>, ConfigError> {
    match url.map(str::trim) {
        None | Some("") => Ok(None),
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            Ok(Some(u.trim_end_matches('/').to_owned()))
        }
        Some(u) => Err(bad(format!("public_url: {u:?} is not an http(s) URL"))),
    }
}
