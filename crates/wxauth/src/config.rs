//! Configuration: defaults, then a TOML file, then `WXAUTH_…` environment
//! variables (nested keys joined with `__`, e.g.
//! `WXAUTH_TOKENS__ACCESS_TTL_SECS=600`). Secrets can stay out of the file:
//! every secret has a `…_env` twin naming the variable that holds it.
//!
//! Everything is checked at start-up and a bad value fails with one line
//! naming the key, never at the first request.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use sha2::Digest;
use wechat_miniapp::{AppSecret, SecretText};

use crate::vocab::ServiceScope;

/// Environment variables with the `WXAUTH_` prefix that are not configuration
/// keys (used by the CLI, logging and tests).
const NON_CONFIG_ENV: &[&str] = &["LOG", "LOG_FORMAT", "CONFIG", "SIM_LISTEN"];

/// The deepest `limits.json_depth` allowed: below serde_json's own
/// recursion limit (128), with room for the wrappers a stored document is
/// answered in, so a body we accepted can always be parsed again.
pub const MAX_JSON_DEPTH: usize = 100;

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
}

/// One `[[collections]]` entry.
#[derive(Debug, Clone, Deserialize)]
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
}

pub use crate::vocab::collections::{Access, CollectionRule};

/// Indexes one collection may declare (each costs every write to it).
pub const MAX_INDEXES_PER_COLLECTION: usize = 8;

/// One `[[gateway]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The path prefix, e.g. `/api/` (requests under it are forwarded with
    /// their whole path).
    pub prefix: String,
    /// The service's base URL, e.g. `http://127.0.0.1:3000`.
    pub upstream: String,
    /// `required` (no valid token: 401) or `optional` (no token: forwarded
    /// without identity headers; an invalid token is still a 401).
    #[serde(default)]
    pub auth: GatewayAuth,
    /// Time for the service's answer to begin, in milliseconds (then 504).
    #[serde(default = "default_gateway_timeout_ms")]
    pub timeout_ms: u64,
    /// Time to connect to the service, in milliseconds (then 502).
    #[serde(default = "default_gateway_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

/// Whether a gateway entry needs a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayAuth {
    /// No valid token: 401 (the default).
    #[default]
    Required,
    /// No token: forwarded without identity headers.
    Optional,
}
fn default_gateway_timeout_ms() -> u64 {
    10_000
}
fn default_gateway_connect_timeout_ms() -> u64 {
    2_000
}

/// A gateway entry, checked.
#[derive(Debug, Clone)]
pub struct GatewayRoute {
    /// Path prefix, starting and ending with `/`.
    pub prefix: String,
    /// Base URL without a trailing `/`.
    pub upstream: String,
    /// Whether a token is required.
    pub auth_required: bool,
    /// Until the answer begins.
    pub timeout: Duration,
    /// Until connected.
    pub connect_timeout: Duration,
}

/// Prefixes the service's own routes use: a gateway may not shadow them.
const RESERVED_PREFIXES: &[&str] = &[
    "/v1/",
    "/admin/",
    "/.well-known/",
    "/sim/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
];

/// A service key as configured: its id, how to recognise it, what it may do.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceKeyConfig {
    /// A name for logs and the audit trail.
    pub id: String,
    /// The SHA-256 of the key, hex (the key itself stays with the service).
    #[serde(default)]
    pub sha256: Option<String>,
    /// Or: the environment variable holding the key itself.
    #[serde(default)]
    pub key_env: Option<String>,
    /// What it may do: `introspect`, `users:read`, `users:write`,
    /// `sessions:revoke`, `data:read`, `data:write`, `audit:read`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A service key, checked: only its hash is kept.
#[derive(Clone)]
pub struct ServiceKey {
    /// Its id.
    pub id: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Its scopes.
    pub scopes: Vec<ServiceScope>,
}

impl std::fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServiceKey({}, {:?})", self.id, self.scopes)
    }
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
        }
    }
}

/// How to reach WeChat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    /// WeChat's API root (or a simulator's).
    pub base_url: String,
    /// Time allowed for one call, in milliseconds.
    pub timeout_ms: u64,
    /// Time allowed to connect, in milliseconds.
    pub connect_timeout_ms: u64,
    /// `stable` (stable_token, safe with several instances) or `classic` (cgi-bin/token).
    pub token_source: TokenSourceName,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            base_url: wechat_miniapp::WECHAT_API_BASE.into(),
            timeout_ms: 5000,
            connect_timeout_ms: 5000,
            token_source: TokenSourceName::Stable,
        }
    }
}

/// Which endpoint gives WeChat access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSourceName {
    /// `cgi-bin/stable_token`: the same token for every caller until its
    /// last minutes, safe with several instances.
    Stable,
    /// `cgi-bin/token`: each call replaces the previous token.
    Classic,
}

/// One mini program.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The AppID (`wx…`).
    pub appid: String,
    /// The AppSecret, written in the file. Prefer `secret_env`.
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// The name of the environment variable holding the AppSecret.
    #[serde(default)]
    pub secret_env: Option<String>,
}

/// Session token settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Access token lifetime in seconds.
    pub access_ttl_secs: u64,
    /// Refresh token lifetime in seconds (each refresh starts a new one).
    pub refresh_ttl_secs: u64,
    /// Signing keys; the first signs, all verify (for rotation). Each has
    /// an `alg`: `EdDSA` (the default; the key is a 32-byte Ed25519 seed and
    /// its public half is published at `/.well-known/jwks.json`) or `HS256`
    /// (a shared secret of 32+ bytes, never published).
    pub signing_keys: Vec<KeyConfig>,
    /// The `iss` of access tokens (what services verifying them expect).
    pub issuer: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            signing_keys: Vec::new(),
            issuer: "wxauth".into(),
        }
    }
}

/// A named key, given as base64 in the file or through an environment variable.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id (a JWT `kid`, or the id stored beside ciphertexts).
    pub id: String,
    /// The key, base64.
    #[serde(default)]
    pub key: Option<SecretText>,
    /// The name of the environment variable holding the key, base64.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Signing keys only: `EdDSA` (default) or `HS256`.
    #[serde(default)]
    pub alg: Option<String>,
}

/// How an access-token signing key signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    /// Ed25519: services verify with the public key (JWKS).
    EdDsa,
    /// HMAC-SHA256: whoever verifies holds the secret.
    Hs256,
}

/// An access-token signing key, checked.
#[derive(Clone)]
pub struct SigningKey {
    /// Its `kid`.
    pub id: String,
    /// How it signs.
    pub alg: SigningAlg,
    /// The Ed25519 seed (32 bytes) or the HMAC secret.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, {:?}, {} bytes)",
            self.id,
            self.alg,
            self.bytes.len()
        )
    }
}

/// Encryption at rest.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EncryptionConfig {
    /// 32-byte keys; the first encrypts, all decrypt. Ids are 1–255.
    pub keys: Vec<KeyConfig>,
}

/// Size and rate limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body, bytes.
    pub body_bytes: usize,
    /// Largest profile (as JSON), bytes.
    pub profile_bytes: usize,
    /// Documents one user may keep in one collection.
    pub documents_per_collection: u32,
    /// Collections (holding at least one document) one user may have.
    pub collections_per_user: u32,
    /// Bytes one user's documents may take across all collections: each
    /// document's JSON plus 512 bytes for its row and index entries (so a
    /// flood of tiny documents is bounded too).
    pub bytes_per_user: u64,
    /// The largest page of a document list.
    pub page_size_max: u32,
    /// Logins allowed per client IP per minute.
    pub login_per_ip_per_minute: u32,
    /// Logins allowed per app per second.
    pub login_per_app_per_second: u32,
    /// How deep arrays and objects may nest in any JSON body (documents
    /// included), at most 100.
    pub json_depth: usize,
    /// Login codes WeChat may refuse per client address per minute; past
    /// that the address is refused before it costs the app anything.
    pub login_failures_per_ip_per_minute: u32,
    /// The longest a query (`where`, `order_by`, `_count`) may take,
    /// waiting for its turn included: then it is stopped and answered 503
    /// `query_timeout`. At most 4 such queries run at once per process.
    pub query_timeout_ms: u64,
    /// Data requests (`/v1/data/…`) per user per minute, a burst of as many
    /// allowed; past it 429 `rate_limited`. Counted across instances in
    /// Redis when `redis_url` is set.
    pub data_requests_per_user_per_minute: u32,
    /// Exports (`GET /v1/me/export`, the admin and CLI exports) streaming
    /// at once per process; more are answered 429. Each holds a database
    /// connection for its snapshot while it streams.
    pub exports_at_once: u32,
    /// Code exchanges one client address may have in flight at once.
    pub login_in_flight_per_ip: u32,
    /// How long a login code already exchanged is answered like the first
    /// time (a client's retry after a lost answer), seconds; 0 turns
    /// replays off. Kept short: anyone who saw a used code (a log, a proxy)
    /// could otherwise open sessions with it for the code's whole 5 minutes.
    /// An instance keeps at most 262,144 codes (about 15 MB): above about
    /// 8,700 logins/s its oldest go early, as if the window were shorter.
    pub login_code_replay_secs: u64,
    /// Wrong or missing service keys (introspection, the admin API) allowed
    /// per client address per minute; past that the address gets 429.
    pub service_key_failures_per_ip_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            profile_bytes: 4 * 1024,
            documents_per_collection: 10_000,
            collections_per_user: 100,
            bytes_per_user: 10 * 1024 * 1024,
            page_size_max: 100,
            login_per_ip_per_minute: 60,
            login_per_app_per_second: 500,
            json_depth: 32,
            login_failures_per_ip_per_minute: 10,
            exports_at_once: 2,
            query_timeout_ms: 5_000,
            data_requests_per_user_per_minute: 1_200,
            login_in_flight_per_ip: 8,
            login_code_replay_secs: 30,
            service_key_failures_per_ip_per_minute: 10,
        }
    }
}

/// HTTP serving details.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// The proxies (addresses or CIDRs, e.g. `"10.0.0.0/8"`) whose
    /// `X-Forwarded-For` is believed. The client address is the right-most
    /// entry that is not one of them (as nginx's `real_ip_recursive`);
    /// empty (the default): the socket peer, and the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Replaced by `trusted_proxies`; refused with a message saying so.
    #[serde(default)]
    pub trust_forwarded_for: Option<bool>,
    /// A request that takes longer is answered 503.
    pub request_timeout_ms: u64,
    /// A new connection, or a request whose first byte arrived, must have
    /// sent its whole header block within this time, or it is closed.
    pub header_read_timeout_ms: u64,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout_ms: u64,
    /// Reading a request body may take this long; then 408 `request_timeout`.
    pub body_timeout_ms: u64,
    /// Open connections served; when reached, an idle connection is closed
    /// to admit a new one, and only when none is idle does a new one get
    /// 503 `server_busy` (keep it below the process's open-files limit).
    pub max_connections: usize,
    /// Open connections one client address (an IPv6 /64) may hold; past
    /// it a new one is closed at once. `trusted_proxies` are exempt.
    pub max_connections_per_address: usize,
    /// On SIGTERM, how long requests in progress may finish before every
    /// connection is closed.
    pub shutdown_grace_ms: u64,
    /// The request headers' total size (names and values), bytes; larger
    /// is 431 `header_too_large`.
    pub max_header_bytes: usize,
    /// The request target's length (path and query), bytes; longer is 414
    /// `uri_too_long`.
    pub max_uri_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            trust_forwarded_for: None,
            request_timeout_ms: 15_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_timeout_ms: 10_000,
            max_connections: 1024,
            max_connections_per_address: 256,
            shutdown_grace_ms: 10_000,
            max_header_bytes: 16 * 1024,
            max_uri_bytes: 8 * 1024,
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

/// One app, resolved.
#[derive(Debug, Clone)]
pub struct App {
    /// The AppID.
    pub appid: String,
    /// The AppSecret.
    pub secret: AppSecret,
}

/// A named key, resolved to bytes.
#[derive(Clone)]
pub struct NamedKey {
    /// Its id.
    pub id: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "NamedKey({}, <{} bytes redacted>)",
            self.id,
            self.bytes.len()
        )
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
}

fn env_var(name: &str, key: &str) -> Result<String, ConfigError> {
    std::env::var(name).map_err(|_| bad(format!("{key}: environment variable {name} is not set")))
}

fn resolve_key(k: &KeyConfig, key_path: &str) -> Result<Vec<u8>, ConfigError> {
    let text = match (&k.key, &k.key_env) {
        (Some(t), None) => t.expose().to_owned(),
        (None, Some(var)) => env_var(var, key_path)?,
        _ => {
            return Err(bad(format!(
                "{key_path}: give exactly one of key or key_env"
            )));
        }
    };
    STANDARD
        .decode(text.trim())
        .map_err(|_| bad(format!("{key_path}: not valid base64")))
}

fn valid_appid(appid: &str) -> bool {
    !appid.is_empty()
        && appid.len() <= 64
        && appid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

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

    /// Checks every value and loads secrets.
    pub fn resolve(&self) -> Result<Settings, ConfigError> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(bad(format!(
                "database_url: unsupported scheme in {:?}; use sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(url)
            )));
        }
        let redis_url = self
            .redis_url
            .as_ref()
            .filter(|u| !u.expose().trim().is_empty())
            .cloned();
        if let Some(r) = &redis_url
            && !r.expose().starts_with("redis://")
        {
            return Err(bad(format!(
                "redis_url: unsupported scheme in {:?}; use redis://[:PASSWORD@]HOST:PORT[/DB]",
                r.redacted()
            )));
        }
        if self.apps.is_empty() {
            return Err(bad(
                "apps: configure at least one [[apps]] with appid and secret_env",
            ));
        }
        let mut apps: Vec<App> = Vec::new();
        for (i, app) in self.apps.iter().enumerate() {
            let key = format!("apps[{i}]");
            if !valid_appid(&app.appid) {
                return Err(bad(format!("{key}.appid: {:?} is not an AppID", app.appid)));
            }
            if apps.iter().any(|a| a.appid == app.appid) {
                return Err(bad(format!(
                    "{key}.appid: {} is configured twice",
                    app.appid
                )));
            }
            let secret = match (&app.secret, &app.secret_env) {
                (Some(s), None) => s.expose().to_owned(),
                (None, Some(var)) => env_var(var, &format!("{key}.secret_env"))?,
                _ => {
                    return Err(bad(format!(
                        "{key}: give exactly one of secret or secret_env"
                    )));
                }
            };
            if secret.trim().is_empty() {
                return Err(bad(format!("{key}: the secret is empty")));
            }
            apps.push(App {
                appid: app.appid.clone(),
                secret: AppSecret::new(secret.trim()),
            });
        }
        let default_appid = match &self.default_appid {
            Some(d) if apps.iter().any(|a| &a.appid == d) => Some(d.clone()),
            Some(d) => {
                return Err(bad(format!(
                    "default_appid: {d} is not one of the configured apps"
                )));
            }
            None if apps.len() == 1 => Some(apps[0].appid.clone()),
            None => None,
        };
        let token_source = match self.wechat.token_source {
            TokenSourceName::Stable => wechat_miniapp::TokenSource::Stable,
            TokenSourceName::Classic => wechat_miniapp::TokenSource::Classic,
        };
        if self.wechat.timeout_ms == 0 || self.wechat.connect_timeout_ms == 0 {
            return Err(bad(
                "wechat.timeout_ms and wechat.connect_timeout_ms must be positive",
            ));
        }
        if self.tokens.access_ttl_secs == 0
            || self.tokens.refresh_ttl_secs < self.tokens.access_ttl_secs
        {
            return Err(bad(
                "tokens: access_ttl_secs must be positive and at most refresh_ttl_secs",
            ));
        }
        if self.tokens.signing_keys.is_empty() {
            return Err(bad(
                "tokens.signing_keys: configure at least one key (32+ random bytes, base64)",
            ));
        }
        let mut signing_keys: Vec<SigningKey> = Vec::new();
        for (i, k) in self.tokens.signing_keys.iter().enumerate() {
            let path = format!("tokens.signing_keys[{i}]");
            let bytes = resolve_key(k, &path)?;
            let alg = match k.alg.as_deref().unwrap_or("EdDSA") {
                "EdDSA" => SigningAlg::EdDsa,
                "HS256" => SigningAlg::Hs256,
                other => {
                    return Err(bad(format!(
                        "{path}.alg: {other:?}; use \"EdDSA\" (the default) or \"HS256\""
                    )));
                }
            };
            match alg {
                SigningAlg::EdDsa if bytes.len() != 32 => {
                    return Err(bad(format!(
                        "{path}: an EdDSA key is an Ed25519 seed of exactly 32 bytes (head -c 32 /dev/urandom | base64); for a longer HMAC secret set alg = \"HS256\""
                    )));
                }
                SigningAlg::Hs256 if bytes.len() < 32 => {
                    return Err(bad(format!("{path}: an HS256 key needs at least 32 bytes")));
                }
                _ => {}
            }
            if k.id.is_empty() || signing_keys.iter().any(|s| s.id == k.id) {
                return Err(bad(format!(
                    "{path}.id: ids must be non-empty and distinct"
                )));
            }
            signing_keys.push(SigningKey {
                id: k.id.clone(),
                alg,
                bytes,
            });
        }
        let mut service_keys: Vec<ServiceKey> = Vec::new();
        for (i, k) in self.service_keys.iter().enumerate() {
            let path = format!("service_keys[{i}]");
            if k.id.is_empty() || service_keys.iter().any(|s| s.id == k.id) {
                return Err(bad(format!(
                    "{path}.id: ids must be non-empty and distinct"
                )));
            }
            let sha256: [u8; 32] = match (&k.sha256, &k.key_env) {
                (Some(hex_text), None) => hex::decode(hex_text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "{path}.sha256: 64 hex digits (sha256sum of the key)"
                        ))
                    })?,
                (None, Some(var)) => {
                    let key = env_var(var, &format!("{path}.key_env"))?;
                    if key.trim().len() < 24 {
                        return Err(bad(format!(
                            "{path}.key_env: a service key needs at least 24 characters"
                        )));
                    }
                    sha2::Sha256::digest(key.trim().as_bytes()).into()
                }
                _ => {
                    return Err(bad(format!(
                        "{path}: give exactly one of sha256 or key_env"
                    )));
                }
            };
            let scopes = k
                .scopes
                .iter()
                .map(|scope| ServiceScope::parse(scope))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|message| bad(format!("{path}.scopes: {message}")))?;
            service_keys.push(ServiceKey {
                id: k.id.clone(),
                sha256,
                scopes,
            });
        }
        let collections = self.check_collections()?;
        let mut gateways: Vec<GatewayRoute> = Vec::new();
        for (i, g) in self.gateway.iter().enumerate() {
            let path = format!("gateway[{i}]");
            let p = g.prefix.trim();
            let shaped = p.len() > 2
                && p.starts_with('/')
                && p.ends_with('/')
                && !p.contains("//")
                && !p.split('/').any(|seg| seg == "." || seg == "..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
            if !shaped {
                return Err(bad(format!(
                    "{path}.prefix: {p:?}; use a path such as \"/api/\" (letters, digits, -_./, starting and ending with /)"
                )));
            }
            if RESERVED_PREFIXES
                .iter()
                .any(|r| p.starts_with(r) || r.starts_with(p))
            {
                return Err(bad(format!(
                    "{path}.prefix: {p} would cover wxauth's own routes ({})",
                    RESERVED_PREFIXES.join(" ")
                )));
            }
            if let Some(other) = gateways
                .iter()
                .find(|o| o.prefix.starts_with(p) || p.starts_with(&o.prefix))
            {
                return Err(bad(format!(
                    "{path}.prefix: {p} overlaps the gateway prefix {}",
                    other.prefix
                )));
            }
            let upstream = g.upstream.trim().trim_end_matches('/');
            let url_ok = (upstream.starts_with("http://") || upstream.starts_with("https://"))
                && upstream
                    .split("://")
                    .nth(1)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'));
            if !url_ok {
                return Err(bad(format!(
                    "{path}.upstream: {upstream:?}; use the service's base URL, e.g. http://127.0.0.1:3000 (no path)"
                )));
            }
            let auth_required = g.auth == GatewayAuth::Required;
            if g.timeout_ms == 0
                || g.connect_timeout_ms == 0
                || g.timeout_ms >= self.http.request_timeout_ms
            {
                return Err(bad(format!(
                    "{path}: timeout_ms and connect_timeout_ms must be positive, and timeout_ms below http.request_timeout_ms ({})",
                    self.http.request_timeout_ms
                )));
            }
            gateways.push(GatewayRoute {
                prefix: p.to_owned(),
                upstream: upstream.to_owned(),
                auth_required,
                timeout: Duration::from_millis(g.timeout_ms),
                connect_timeout: Duration::from_millis(g.connect_timeout_ms),
            });
        }
        if self.tokens.issuer.trim().is_empty() {
            return Err(bad("tokens.issuer: must not be empty"));
        }
        let public_url = match self.public_url.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            Some(u) => {
                return Err(bad(format!("public_url: {u:?} is not an http(s) URL")));
            }
        };
        if self.encryption.keys.is_empty() {
            return Err(bad(
                "encryption.keys: configure at least one 32-byte key (base64)",
            ));
        }
        let mut encryption_keys = Vec::new();
        for (i, k) in self.encryption.keys.iter().enumerate() {
            let path = format!("encryption.keys[{i}]");
            if k.alg.is_some() {
                return Err(bad(format!(
                    "{path}.alg: only signing keys have an algorithm"
                )));
            }
            let bytes = resolve_key(k, &path)?;
            if bytes.len() != 32 {
                return Err(bad(format!(
                    "{path}: an encryption key must be exactly 32 bytes"
                )));
            }
            let id_ok = k.id.parse::<u8>().is_ok_and(|n| n > 0);
            if !id_ok || encryption_keys.iter().any(|s: &NamedKey| s.id == k.id) {
                return Err(bad(format!(
                    "{path}.id: ids must be distinct numbers from 1 to 255"
                )));
            }
            encryption_keys.push(NamedKey {
                id: k.id.clone(),
                bytes,
            });
        }
        if self.limits.body_bytes < 1024 || self.limits.profile_bytes == 0 {
            return Err(bad(
                "limits: body_bytes must be at least 1024 and profile_bytes positive",
            ));
        }
        if self.limits.documents_per_collection == 0
            || self.limits.page_size_max == 0
            || self.limits.collections_per_user == 0
            || self.limits.bytes_per_user == 0
        {
            return Err(bad(
                "limits: documents_per_collection, collections_per_user, bytes_per_user and page_size_max must be positive",
            ));
        }
        if self.limits.json_depth == 0 || self.limits.json_depth > MAX_JSON_DEPTH {
            return Err(bad(format!(
                "limits.json_depth: must be from 1 to {MAX_JSON_DEPTH}"
            )));
        }
        if self.limits.login_per_ip_per_minute == 0
            || self.limits.login_per_app_per_second == 0
            || self.limits.login_failures_per_ip_per_minute == 0
            || self.limits.login_in_flight_per_ip == 0
            || self.limits.service_key_failures_per_ip_per_minute == 0
        {
            return Err(bad("limits: login rate limits must be positive"));
        }
        if self.limits.query_timeout_ms == 0
            || self.limits.data_requests_per_user_per_minute == 0
            || self.limits.exports_at_once == 0
        {
            return Err(bad(
                "limits: query_timeout_ms, data_requests_per_user_per_minute and exports_at_once must be positive",
            ));
        }
        if self.limits.login_code_replay_secs > 300 {
            return Err(bad(
                "limits.login_code_replay_secs: at most 300 (a login code lives 5 minutes)",
            ));
        }
        let h = &self.http;
        if [
            h.request_timeout_ms,
            h.header_read_timeout_ms,
            h.idle_timeout_ms,
            h.body_timeout_ms,
            h.shutdown_grace_ms,
        ]
        .contains(&0)
            || h.max_connections == 0
            || h.max_connections_per_address == 0
        {
            return Err(bad(
                "http: timeouts, max_connections and max_connections_per_address must be positive",
            ));
        }
        if h.max_header_bytes < 1024 || h.max_uri_bytes < 256 {
            return Err(bad(
                "http: max_header_bytes must be at least 1024 and max_uri_bytes at least 256",
            ));
        }
        if self.http.trust_forwarded_for.is_some() {
            return Err(bad(
                "http.trust_forwarded_for was replaced: list your proxies instead, e.g. http.trusted_proxies = [\"10.0.0.0/8\"]",
            ));
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in self.http.trusted_proxies.iter().enumerate() {
            let net = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    bad(format!(
                        "http.trusted_proxies[{i}]: {text:?} is not an address or CIDR (e.g. 10.0.0.0/8)"
                    ))
                })?;
            trusted_proxies.push(net);
        }
        if self.playground.enabled && !self.playground.sim_url.starts_with("http") {
            return Err(bad(
                "playground.sim_url: the playground needs the WeChat simulator's URL",
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
            wechat: wechat_miniapp::ClientConfig {
                base_url: self.wechat.base_url.clone(),
                timeout: Duration::from_millis(self.wechat.timeout_ms),
                connect_timeout: Duration::from_millis(self.wechat.connect_timeout_ms),
                ..wechat_miniapp::ClientConfig::default()
            },
            token_source,
            apps,
            default_appid,
            access_ttl: Duration::from_secs(self.tokens.access_ttl_secs),
            refresh_ttl: Duration::from_secs(self.tokens.refresh_ttl_secs),
            signing_keys,
            issuer: self.tokens.issuer.trim().to_owned(),
            public_url,
            encryption_keys,
            limits: self.limits.clone(),
            http: self.http.clone(),
            trusted_proxies,
            service_keys,
            gateways,
            collections,
            playground_sim_url: self
                .playground
                .enabled
                .then(|| self.playground.sim_url.clone()),
        })
    }
}

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
