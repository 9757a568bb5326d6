//! Configuration: defaults, then a TOML file, then `WXAUTH_…` environment
//! variables (nested keys joined with `__`, e.g.
//! `WXAUTH_TOKENS__ACCESS_TTL_SECS=600`). Secrets can stay out of the file:
//! every secret has a `…_env` twin naming the variable that holds it.
//!
//! Everything is checked at start-up and a bad value fails with one line
//! naming the key, never at the first request.
//!
//! A file per section: each holds the section as written (`…Config`, with
//! its defaults), what it becomes once checked, and its one `check`;
//! [`Config::resolve`] runs them in turn. Modes are serde enums, so a bad
//! value is refused as the file is read, with the allowed values named.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

mod apps;
mod collections;
mod content;
mod encryption;
mod files;
mod gateway;
mod http;
mod keys;
mod limits;
mod realtime;
mod service_keys;
mod tokens;
mod urls;
mod wechat;

pub use apps::{App, AppConfig, OnRevoke};
pub use collections::{Access, CollectionConfig, CollectionRule, MAX_INDEXES_PER_COLLECTION};
pub use content::{
    CheckedFields, ContentCheckConfig, ContentCheckSettings, OnReview, OnUnavailable,
};
pub use encryption::EncryptionConfig;
pub use files::{FileSettings, FileStore, FilesConfig, S3Store};
pub use gateway::{GatewayAuth, GatewayConfig, GatewayRoute};
pub use http::HttpConfig;
pub use keys::{KeyConfig, NamedKey};
pub use limits::{LimitsConfig, MAX_JSON_DEPTH};
pub use realtime::{RealtimeConfig, RealtimeSettings};
pub use service_keys::{ServiceKey, ServiceKeyConfig};
pub use tokens::{SigningAlg, SigningKey, TokenConfig};
pub use urls::{DatabaseUrl, redact_url};
pub use wechat::{TokenSourceName, WechatConfig};

/// Environment variables with the `WXAUTH_` prefix that are not configuration
/// keys (used by the CLI, logging and tests).
const NON_CONFIG_ENV: &[&str] = &["LOG", "LOG_FORMAT", "CONFIG", "SIM_LISTEN"];

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// The configuration as written (file and environment).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to serve the API on.
    pub listen: SocketAddr,
    /// Serve the admin API (`/admin/v1/…`) only on this address (e.g. a
    /// private interface), and not on `listen`.
    pub admin_listen: Option<SocketAddr>,
    /// `sqlite://path` or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// `redis://…`: what several instances share (revocations, login codes,
    /// rate limits, WeChat's access token). Without it, one instance only.
    pub redis_url: Option<DatabaseUrl>,
    /// The URL clients reach this service at, e.g. `https://api.example.com`
    /// (named in `/.well-known/openid-configuration`).
    pub public_url: Option<String>,
    /// How to reach WeChat.
    pub wechat: WechatConfig,
    /// The mini programs this service logs users in for.
    pub apps: Vec<AppConfig>,
    /// The app a login without `appid` is for. Optional when only one app is
    /// configured (it is then the default).
    pub default_appid: Option<String>,
    /// Session token settings.
    pub tokens: TokenConfig,
    /// Keys that encrypt session_keys and phone numbers at rest.
    pub encryption: EncryptionConfig,
    /// Size and rate limits.
    pub limits: LimitsConfig,
    /// HTTP serving details.
    pub http: HttpConfig,
    /// The browser playground (on in `wxauth dev`).
    pub playground: PlaygroundConfig,
    /// Keys the developer's services authenticate with (introspection,
    /// and later the admin API).
    pub service_keys: Vec<ServiceKeyConfig>,
    /// Path prefixes forwarded to the developer's own services, with the
    /// caller's identity in `X-Wxauth-*` headers.
    pub gateway: Vec<GatewayConfig>,
    /// Collections with another access mode than `private`, or indexes.
    pub collections: Vec<CollectionConfig>,
    /// Uploaded files.
    pub files: FilesConfig,
    /// Realtime watches.
    pub realtime: RealtimeConfig,
    /// WeChat's content check of what users write.
    pub content_check: ContentCheckConfig,
}

/// The browser playground at `/`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PlaygroundConfig {
    /// Serve the playground page at `/`.
    pub enabled: bool,
    /// The WeChat simulator the page's test phone talks to.
    pub sim_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            database_url: DatabaseUrl::new("sqlite://wxauth.db"),
            redis_url: None,
            public_url: None,
            wechat: WechatConfig::default(),
            apps: Vec::new(),
            default_appid: None,
            tokens: TokenConfig::default(),
            encryption: EncryptionConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            playground: PlaygroundConfig::default(),
            service_keys: Vec::new(),
            gateway: Vec::new(),
            collections: Vec::new(),
            files: FilesConfig::default(),
            realtime: RealtimeConfig::default(),
            content_check: ContentCheckConfig::default(),
        }
    }
}

/// Whether wxauth reads the environment variable `name` as a setting
/// (every `WXAUTH_…` variable but a few reserved ones): such a name cannot
/// also hold a key or secret named by `key_env` / `secret_env`, since the
/// settings layer would refuse it as an unknown setting at start-up.
pub fn env_name_is_a_setting(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    match upper.strip_prefix("WXAUTH_") {
        Some(rest) => !NON_CONFIG_ENV.contains(&rest) && !rest.starts_with("TEST_"),
        None => false,
    }
}

impl Config {
    /// The `key_env` and `secret_env` names the configuration uses, with
    /// the setting's path.
    fn env_references(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            if let Some(v) = &app.secret_env {
                out.push((format!("apps[{i}].secret_env"), v.as_str()));
            }
        }
        for (list, keys) in [
            ("tokens.signing_keys", &self.tokens.signing_keys),
            ("encryption.keys", &self.encryption.keys),
        ] {
            for (i, key) in keys.iter().enumerate() {
                if let Some(v) = &key.key_env {
                    out.push((format!("{list}[{i}].key_env"), v.as_str()));
                }
            }
        }
        for (i, key) in self.service_keys.iter().enumerate() {
            if let Some(v) = &key.key_env {
                out.push((format!("service_keys[{i}].key_env"), v.as_str()));
            }
        }
        for (path, var) in [
            ("files.access_key_env", &self.files.access_key_env),
            ("files.secret_key_env", &self.files.secret_key_env),
        ] {
            if let Some(v) = var {
                out.push((path.into(), v.as_str()));
            }
        }
        out
    }

    /// Refuses a `key_env` / `secret_env` that names a variable wxauth
    /// reads as a setting, saying which and what to do.
    fn check_env_references(&self) -> Result<(), ConfigError> {
        for (path, name) in self.env_references() {
            if env_name_is_a_setting(name) {
                return Err(bad(format!(
                    "{path}: {name} starts with WXAUTH_, and every WXAUTH_ variable is read as a setting; \
                     name the variable without that prefix (e.g. {})",
                    name.get(7..).unwrap_or("MY_KEY")
                )));
            }
        }
        Ok(())
    }

    /// Whether the configuration holds a key or secret inline (`key = …`,
    /// `secret = …`): its file must then be readable by its owner only.
    pub fn holds_inline_secrets(&self) -> bool {
        self.apps.iter().any(|a| a.secret.is_some())
            || self.tokens.signing_keys.iter().any(|k| k.key.is_some())
            || self.encryption.keys.iter().any(|k| k.key.is_some())
            || self.files.secret_key.is_some()
    }

    /// Reads defaults, then `path` (if given), then `WXAUTH_…` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        // Every section fills what is left out from its `Default` (serde's
        // `default`), so no defaults layer is needed: `Config` has no
        // `Serialize`, and nothing can write its secrets out.
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(bad(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
            // A key variable named like a setting would be refused below
            // as an unknown setting, without a word about why: say it.
            if let Ok(file_only) = figment.extract::<Config>() {
                file_only.check_env_references()?;
            }
        }
        let env = Env::prefixed("WXAUTH_")
            .filter(|key| {
                let key = key.as_str().to_ascii_uppercase();
                !NON_CONFIG_ENV.contains(&key.as_str()) && !key.starts_with("TEST_")
            })
            .split("__");
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|e| bad(e.to_string().replace('\n', " ")))?;
        config.check_env_references()?;
        Ok(config)
    }
}

/// The configuration, checked, with secrets loaded: what the service runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to serve the API on.
    pub listen: SocketAddr,
    /// Where the admin API is served instead, when apart.
    pub admin_listen: Option<SocketAddr>,
    /// Database URL.
    pub database_url: DatabaseUrl,
    /// Redis URL, when instances share state through it.
    pub redis_url: Option<DatabaseUrl>,
    /// WeChat client settings.
    pub wechat: wechat_miniapp::ClientConfig,
    /// Which token endpoint.
    pub token_source: wechat_miniapp::TokenSource,
    /// Apps, in configuration order.
    pub apps: Vec<App>,
    /// The app of logins that name none.
    pub default_appid: Option<String>,
    /// Access token lifetime.
    pub access_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// Signing keys, the active one first.
    pub signing_keys: Vec<SigningKey>,
    /// The `iss` of access tokens.
    pub issuer: String,
    /// The URL clients reach this service at (for `jwks_uri`); when unset,
    /// taken from each request's `Host`.
    pub public_url: Option<String>,
    /// Encryption keys, the active one first.
    pub encryption_keys: Vec<NamedKey>,
    /// Limits.
    pub limits: LimitsConfig,
    /// HTTP details.
    pub http: HttpConfig,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The simulator URL of the playground, when it is served.
    pub playground_sim_url: Option<String>,
    /// Service keys (hashes only).
    pub service_keys: Vec<ServiceKey>,
    /// Gateway routes.
    pub gateways: Vec<GatewayRoute>,
    /// Collections with rules of their own.
    pub collections: Vec<CollectionRule>,
    /// Uploaded files.
    pub files: FileSettings,
    /// Realtime watches.
    pub realtime: RealtimeSettings,
    /// WeChat's content check of what users write.
    pub content_check: ContentCheckSettings,
}

fn env_var(name: &str, key: &str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| bad(format!("{key}: environment variable {name} is not set")))
}

impl Settings {
    /// The URL clients reach this service at: `public_url`, else `listen`
    /// when it is a specific address and port (never a request's `Host`);
    /// None when neither says.
    pub fn reachable_url(&self) -> Option<String> {
        match &self.public_url {
            Some(url) => Some(url.clone()),
            None if !self.listen.ip().is_unspecified() && self.listen.port() != 0 => {
                Some(format!("http://{}", self.listen))
            }
            None => None,
        }
    }
}

impl Config {
    /// Checks every value and loads secrets, a section at a time (each
    /// section's own check names the key at fault).
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        urls::check_database_url(&self.database_url)?;
        let redis_url = urls::check_redis_url(self.redis_url.as_ref())?;
        let (apps, default_appid) = apps::check_apps(&self.apps, self.default_appid.as_ref())?;
        let (wechat, token_source) = self.wechat.check()?;
        let tokens = self.tokens.check()?;
        let service_keys = service_keys::check_service_keys(&self.service_keys)?;
        let collections = self.check_collections()?;
        let gateways = gateway::check_gateways(&self.gateway, self.http.request_timeout_ms)?;
        let public_url = urls::check_public_url(self.public_url.as_deref())?;
        let encryption_keys = self.encryption.check()?;
        self.limits.check()?;
        let trusted_proxies = self.http.check()?;
        let playground_sim_url = self.playground.check()?;
        let files = self.files.check()?;
        let realtime = self.realtime.check()?;
        let content_check = self.check_content()?;
        if content_check.images
            && public_url.is_none()
            && (self.listen.ip().is_unspecified() || self.listen.port() == 0)
        {
            return Err(bad(
                "content_check.images: WeChat fetches each image to check it: set public_url to the address it can reach",
            ));
        }
        if self.admin_listen == Some(self.listen) {
            return Err(bad(
                "admin_listen: must differ from listen (leave it out to serve the admin API on listen)",
            ));
        }
        Ok(Settings {
            listen: self.listen,
            admin_listen: self.admin_listen,
            database_url: self.database_url.clone(),
            redis_url,
            wechat,
            token_source,
            apps,
            default_appid,
            access_ttl: tokens.access_ttl,
            refresh_ttl: tokens.refresh_ttl,
            signing_keys: tokens.signing_keys,
            issuer: tokens.issuer,
            public_url,
            encryption_keys,
            limits: self.limits.clone(),
            http: self.http.clone(),
            trusted_proxies,
            service_keys,
            gateways,
            collections,
            playground_sim_url,
            files,
            realtime,
            content_check,
        })
    }
}

impl PlaygroundConfig {
    /// The simulator URL the playground page talks to, when it is served.
    fn check(&self) -> Result<Option<String>, ConfigError> {
        if self.enabled && !self.sim_url.starts_with("http") {
            return Err(bad(
                "playground.sim_url: the playground needs the WeChat simulator's URL",
            ));
        }
        Ok(self.enabled.then(|| self.sim_url.clone()))
    }
}
