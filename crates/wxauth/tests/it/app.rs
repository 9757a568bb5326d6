//! Starts the real service and the simulator on loopback ports.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wechat_miniapp::OffsetClock;
use wechat_sim::{SimConfig, Simulator};
use wxauth::config::{AppConfig, CollectionConfig, Config, KeyConfig};
use wxauth::{Deps, build_server};

pub const APP1: &str = "wx1111111111111111";
pub const SECRET1: &str = "11111111111111111111111111111111";
pub const APP2: &str = "wx2222222222222222";
pub const SECRET2: &str = "22222222222222222222222222222222";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Where the app keeps files' bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileBackend {
    /// A folder of the test's own.
    Disk,
    /// A bucket on an `s3s-fs` server of the test's own.
    S3,
}

/// A one-off change to the test configuration.
pub type ConfigEdit = Box<dyn FnOnce(&mut Config) + Send>;

pub struct Options {
    pub db: Db,
    pub access_ttl_secs: u64,
    pub wechat_timeout_ms: u64,
    pub login_per_ip_per_minute: u32,
    pub documents_per_collection: u32,
    /// Any other change to the configuration.
    pub tweak: fn(&mut Config),
    /// Serve this database instead of a new one (a second instance).
    pub database_url: Option<String>,
    /// A change to the configuration that needs values only known at run
    /// time (an upstream's port, say); applied after `tweak`.
    pub edit: Option<ConfigEdit>,
    /// Where files' bytes go.
    pub files: FileBackend,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            db: Db::Sqlite,
            access_ttl_secs: 900,
            wechat_timeout_ms: 5000,
            login_per_ip_per_minute: 100_000,
            documents_per_collection: 10_000,
            tweak: |_| {},
            database_url: None,
            edit: None,
            files: FileBackend::Disk,
        }
    }
}

pub struct TestApp {
    pub url: String,
    pub sim: Simulator,
    #[allow(dead_code)]
    pub sim_url: String,
    pub clock: OffsetClock,
    pub http: reqwest::Client,
    /// The database the app uses (for the operator's CLI in tests).
    pub database_url: String,
    /// The folder holding uploaded files' bytes (for S3, the folder the
    /// test's S3 server keeps the bucket's prefix in).
    pub files_root: std::path::PathBuf,
    /// The test's S3 server, when the files are kept in S3.
    pub s3: Option<crate::s3::S3Server>,
    _files: crate::db::TempDir,
    _dir: Option<crate::db::TempDir>,
    _server: tokio::task::JoinHandle<()>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A service key with every admin scope (configured by `test_config`).
pub const ADMIN_KEY: &str = "svc_admin_all_scopes_0123456789";
/// A service key with `users:read` only.
pub const READER_KEY: &str = "svc_admin_reader_0123456789abc";

pub fn b64_key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

pub async fn spawn_sim(clock: &OffsetClock) -> (Simulator, String) {
    wechat_miniapp::ensure_tls_provider();
    let sim = Simulator::with_clock(
        SimConfig {
            apps: [(APP1.into(), SECRET1.into()), (APP2.into(), SECRET2.into())].into(),
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener));
    (sim, url)
}

/// The service's configuration for tests (also written to files by the
/// process-level tests).
pub fn test_config(database_url: &str, sim_url: &str) -> Config {
    let mut c = Config {
        database_url: database_url.into(),
        ..Config::default()
    };
    c.wechat.base_url = sim_url.to_owned();
    c.apps = vec![
        AppConfig {
            appid: APP1.into(),
            secret: Some(SECRET1.into()),
            secret_env: None,
            ..AppConfig::default()
        },
        AppConfig {
            appid: APP2.into(),
            secret: Some(SECRET2.into()),
            secret_env: None,
            ..AppConfig::default()
        },
    ];
    c.default_appid = Some(APP1.into());
    c.tokens.signing_keys = vec![KeyConfig {
        id: "t1".into(),
        key: Some(b64_key(7).into()),
        key_env: None,
        alg: None,
    }];
    c.encryption.keys = vec![KeyConfig {
        id: "1".into(),
        key: Some(b64_key(9).into()),
        key_env: None,
        alg: None,
    }];
    c.limits.login_per_ip_per_minute = 100_000;
    // Tests write thousands of documents as one user; the per-user limit
    // has a test of its own.
    c.limits.data_requests_per_user_per_minute = 100_000_000;
    {
        use sha2::Digest;
        let key = |id: &str, secret: &str, scopes: &[&str]| wxauth::config::ServiceKeyConfig {
            id: id.into(),
            sha256: Some(hex::encode(sha2::Sha256::digest(secret))),
            key_env: None,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        c.service_keys = vec![
            key(
                "ops",
                ADMIN_KEY,
                &[
                    "users:read",
                    "users:write",
                    "sessions:revoke",
                    "data:read",
                    "data:write",
                    "audit:read",
                    "files:read",
                    "files:write",
                    "messages:send",
                ],
            ),
            key("reader", READER_KEY, &["users:read"]),
        ];
    }
    // Shared collections for the query tests; every other name is private.
    c.collections = vec![
        CollectionConfig {
            name: "posts".into(),
            access: wxauth::vocab::Access::PublicRead,
            indexes: vec!["status".into(), "-score".into()],
            ..Default::default()
        },
        CollectionConfig {
            name: "catalogue".into(),
            access: wxauth::vocab::Access::AdminWrite,
            indexes: Vec::new(),
            ..Default::default()
        },
    ];
    c
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await.unwrap()
}

/// A SQLite app with one change to the configuration.
pub async fn spawn_app_tweaked(tweak: fn(&mut Config)) -> TestApp {
    spawn_app_with(Options {
        tweak,
        ..Options::default()
    })
    .await
    .unwrap()
}

/// None when the backend is PostgreSQL and no test database is configured.
pub async fn spawn_app_with(opts: Options) -> Option<TestApp> {
    let clock = OffsetClock::new();
    let (sim, sim_url) = spawn_sim(&clock).await;
    let (database_url, dir) = match (opts.database_url.clone(), opts.db) {
        (Some(url), _) => (url, None),
        (None, Db::Sqlite) => {
            let dir = crate::db::temp_dir();
            (format!("sqlite://{}/wxauth.db", dir.0.display()), Some(dir))
        }
        (None, Db::Postgres) => (crate::db::postgres_schema_url().await?, None),
    };
    let mut config = test_config(&database_url, &sim_url);
    let files = crate::db::temp_dir();
    let (files_root, s3) = match opts.files {
        FileBackend::Disk => {
            let root = files.0.join("files");
            config.files.url = format!("file://{}", root.display());
            (root, None)
        }
        FileBackend::S3 => {
            let s3 = crate::s3::S3Server::start()?;
            s3.configure(&mut config.files);
            (s3.objects(), Some(s3))
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    config.listen = listener.local_addr().unwrap();
    config.tokens.access_ttl_secs = opts.access_ttl_secs;
    config.wechat.timeout_ms = opts.wechat_timeout_ms;
    config.limits.login_per_ip_per_minute = opts.login_per_ip_per_minute;
    config.limits.documents_per_collection = opts.documents_per_collection;
    (opts.tweak)(&mut config);
    if let Some(edit) = opts.edit {
        edit(&mut config);
    }
    let settings = config.resolve().unwrap();
    let app = build_server(
        settings,
        Deps {
            clock: std::sync::Arc::new(clock.clone()),
        },
    )
    .await
    .unwrap();
    let server = tokio::spawn(async move {
        let _ = wxauth::serve(listener, app, std::future::pending()).await;
    });
    Some(TestApp {
        url,
        sim,
        sim_url,
        clock,
        http: reqwest::Client::new(),
        database_url: database_url.clone(),
        files_root,
        s3,
        _files: files,
        _dir: dir,
        _server: server,
    })
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        reply(resp).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    /// The text of `/metrics` (asserting a 200).
    pub async fn metrics(&self) -> String {
        let resp = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    pub fn code(&self, appid: &str, user: &str) -> String {
        self.sim.login_code(appid, user).unwrap()
    }

    /// Logs `user` of `appid` in; panics unless 200.
    pub async fn login(&self, appid: &str, user: &str) -> Value {
        let code = self.code(appid, user);
        let r = self
            .post("/v1/login", None, json!({"code": code, "appid": appid}))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body
    }

    pub fn openid(&self, appid: &str, user: &str) -> String {
        self.sim.user_info(appid, user).unwrap()["openid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn session_key(&self, appid: &str, user: &str) -> String {
        self.sim.user_info(appid, user).unwrap()["session_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn sim_calls(&self, api: &str) -> u64 {
        self.sim.stats().calls.get(api).copied().unwrap_or(0)
    }

    /// An admin API call with a service key.
    pub async fn admin(
        &self,
        key: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        self.call(method, path, key, body).await
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

pub async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        headers,
        body,
    }
}

pub fn token(login: &Value) -> &str {
    login["access_token"].as_str().unwrap()
}

pub fn refresh(login: &Value) -> &str {
    login["refresh_token"].as_str().unwrap()
}

/// Defines `sqlite` and `postgres` variants of an HTTP test written once as
/// `async fn name(app: TestApp)`.
macro_rules! on_both_impl {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = crate::app::spawn_app_with(crate::app::Options { db: crate::app::Db::Sqlite, ..Default::default() }).await.unwrap();
                    super::$name(app).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = crate::app::spawn_app_with(crate::app::Options { db: crate::app::Db::Postgres, ..Default::default() }).await else { return };
                    super::$name(app).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_impl as on_both;
