//! wxauth: the login and user-data backend for WeChat Mini Programs.
//!
//! Layers, one folder each: `http` translates requests and responses, `auth`
//! and `data` hold the rules, `store` and `cache` persist. [`build_server`] wires
//! them for `main` and for the tests alike.

pub mod admin;
pub mod auth;
pub mod blobs;
pub mod cache;
pub mod config;
pub mod data;
pub mod dev;
pub mod error;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod migrate;
pub mod platform;
pub mod private_files;
pub mod realtime;
pub mod store;
pub mod vocab;

use std::sync::{Arc, OnceLock};

use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use wechat_miniapp::{Clock, SystemClock};

use crate::cache::{MemoryRevocations, Revocations, SharedRedis, SharedRevocations};
use crate::config::Settings;
pub use error::{Error, Result};

/// What the service runs on besides its settings. Tests swap the clock.
pub struct Deps {
    /// The time.
    pub clock: Arc<dyn Clock>,
}

impl Default for Deps {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
        }
    }
}

/// Latency buckets, seconds: from a cached read to a slow WeChat call.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide metrics recorder. The `metrics` facade is global by
/// design; the handle that renders it is passed around like any state.
///
/// Histograms are bucketed (Prometheus histograms, which add up across
/// instances; summaries' quantiles do not). The exporter buffers samples
/// until they are folded into the buckets, so a task folds them every
/// second: memory stays flat whether or not anyone scrapes.
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let recorder = builder
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours renders nothing.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("wxauth-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// A running service's parts.
pub struct Server {
    /// The HTTP router, ready to serve.
    pub router: Router,
    /// The admin API's router, when it is served apart (`admin_listen`).
    pub admin_router: Option<Router>,
    /// The store (to close it on shutdown).
    pub store: store::Store,
    /// Connection timeouts and caps (`[http]`).
    pub connections: http::server::ConnectionLimits,
}

/// The service's rules over its storage, without HTTP: what `serve` runs
/// and what the operator's CLI acts through.
pub struct Rules {
    /// Identity: users, sessions, keys, the audit log.
    pub auth: auth::Auth,
    /// User data.
    pub data: data::Data,
    /// Uploaded files.
    pub files: files::Files,
    /// The store (to close it when done).
    pub store: store::Store,
    /// Redis, when instances share state through it.
    pub redis: Option<Arc<SharedRedis>>,
    /// The clock the rules read.
    pub clock: Arc<dyn wechat_miniapp::Clock>,
}

impl Rules {
    /// The operator's rules over these.
    pub fn admin(&self) -> admin::Admin<'_> {
        admin::Admin::new(&self.auth, &self.data, &self.files)
    }
}

/// Opens the store (migrating it and creating the configured indexes)
/// and wires the rules to it and to Redis when configured. Starts no
/// background task.
pub async fn open_rules(settings: &Settings, deps: Deps) -> Result<Rules> {
    let options = store::StoreOptions {
        query_timeout: std::time::Duration::from_millis(settings.limits.query_timeout_ms),
        change_log: settings.realtime.enabled,
    };
    let store = store::Store::open_with(settings.database_url.expose(), &options).await?;
    let data = data::Data::new(
        store.clone(),
        deps.clock.clone(),
        settings.limits.clone(),
        &settings.collections,
    );
    data.ensure_indexes().await?;
    let redis = match &settings.redis_url {
        Some(url) => Some(SharedRedis::connect(url.expose())?),
        None => {
            if store.backend() == store::Backend::Postgres {
                tracing::warn!(
                    "database_url is PostgreSQL but redis_url is not set: run ONE instance only \
                     (revocations, login codes, rate limits and the WeChat token are per process)"
                );
            }
            None
        }
    };
    let revocations: Arc<dyn Revocations> = match &redis {
        Some(r) => SharedRevocations::start(r.clone()),
        None => Arc::new(MemoryRevocations::default()),
    };
    let blobs = blobs::Blobs::open(&settings.files.store)?;
    let files = files::Files::new(
        store.clone(),
        blobs,
        &settings.encryption_keys,
        files::FileLimits {
            max_bytes: settings.files.max_bytes,
            bytes_per_user: settings.files.bytes_per_user,
            url_ttl: settings.files.url_ttl,
            orphan_grace: settings.files.orphan_grace,
            checked_images: settings.content_check.images,
        },
        settings.reachable_url(),
        deps.clock.clone(),
    );
    let auth = auth::Auth::new(
        settings,
        store.clone(),
        revocations,
        redis.clone(),
        deps.clock.clone(),
    )?;
    Ok(Rules {
        auth,
        data,
        files,
        store,
        redis,
        clock: deps.clock,
    })
}

/// Opens the store (migrating it), warms caches and builds the router.
pub async fn build_server(settings: Settings, deps: Deps) -> Result<Server> {
    let Rules {
        auth,
        data,
        files,
        store,
        redis,
        clock,
    } = open_rules(&settings, deps).await?;
    spawn_idempotency_expiry(data.clone());
    files.spawn_orphan_sweep();
    // Hot user rows in memory only while this process is the one writer.
    store.cache_users(settings.redis_url.is_none());
    let warmed = auth.warm_revocations().await?;
    tracing::debug!(revoked_sessions = warmed, "revocation cache warmed");
    auth.spawn_revocation_sync();
    let connections = http::server::ConnectionLimits::from(&settings.http);
    let apart = settings.admin_listen.is_some();
    let pushes = platform::push::PushDesk::new(&settings.apps, clock.clone(), redis.clone());
    let realtime = realtime::Realtime::new(
        data.clone(),
        store.clone(),
        settings.realtime.clone(),
        clock,
    );
    let state = http::AppState::new(
        auth,
        data,
        files,
        realtime.clone(),
        platform::Platform {
            pushes,
            subscriptions: platform::subscriptions::SubscriptionBook::new(store.clone()),
        },
        settings,
        metrics_handle(),
    )?;
    spawn_realtime(&realtime, &state, redis);
    Ok(Server {
        admin_router: apart.then(|| http::admin_router(state.clone())),
        router: http::router(state),
        store,
        connections,
    })
}

/// Starts realtime's background work: sessions checked with the identity
/// rules, commits' notices shared through Redis when there is one.
fn spawn_realtime(
    realtime: &realtime::Realtime,
    state: &http::AppState,
    redis: Option<Arc<SharedRedis>>,
) {
    let checker = state.clone();
    let sessions: realtime::SessionCheck = Arc::new(move |ids: Vec<String>| {
        let state = checker.clone();
        let ended: futures_util::future::BoxFuture<'static, std::collections::HashSet<String>> =
            Box::pin(async move {
                match state.auth().sessions_ended(&ids).await {
                    Ok(ended) => ended,
                    Err(e) => {
                        tracing::warn!(error = %e, "open sockets' sessions could not be checked");
                        Default::default()
                    }
                }
            });
        ended
    });
    let publish = redis.map(|redis| {
        let heard_by = realtime.clone();
        let heard: cache::change_notices::Heard = Arc::new(
            move |notices: Option<Vec<cache::change_notices::Notice>>| match notices {
                None => heard_by.wake_all(),
                Some(notices) => heard_by.heard(
                    &notices
                        .into_iter()
                        .map(|(appid, collection, position)| store::CommittedPosition {
                            appid,
                            collection,
                            position,
                        })
                        .collect::<Vec<_>>(),
                ),
            },
        );
        let notices = cache::change_notices::start(redis, uuid::Uuid::now_v7().to_string(), heard);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<store::CommittedPosition>>();
        tokio::spawn(async move {
            while let Some(positions) = rx.recv().await {
                let _ = notices.send(
                    positions
                        .into_iter()
                        .map(|p| (p.appid, p.collection, p.position))
                        .collect(),
                );
            }
        });
        tx
    });
    realtime.spawn(sessions, publish);
}

/// Forgets idempotency keys older than a day, every ten minutes. Stops when
/// the store is closed.
fn spawn_idempotency_expiry(data: data::Data) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            match data.expire_idempotency_keys().await {
                Ok(n) if n > 0 => tracing::debug!(expired = n, "idempotency keys expired"),
                Ok(_) => {}
                Err(_) => break, // the store was closed
            }
        }
    });
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains
/// requests in progress (for at most `http.shutdown_grace_ms`) and closes
/// the store (flushing queued writes).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Server,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_admin(listener, None, app, shutdown).await
}

/// [`serve`], with the admin API on `admin_listener` when the app serves
/// it apart (`admin_listen`). Both stop together.
pub async fn serve_with_admin(
    listener: tokio::net::TcpListener,
    admin_listener: Option<tokio::net::TcpListener>,
    app: Server,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = match (admin_listener, app.admin_router) {
        (Some(l), Some(router)) => {
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(http::server::serve(
                l,
                router,
                app.connections.clone(),
                async move {
                    let _ = stop.wait_for(|s| *s).await;
                },
            )))
        }
        (None, Some(_)) => {
            tracing::warn!(
                "admin_listen is set but no admin listener was given: the admin API is not served"
            );
            None
        }
        _ => None,
    };
    let result = http::server::serve(listener, app.router, app.connections, async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    })
    .await;
    if let Some(task) = admin {
        let _ = task.await;
    }
    app.store.close().await;
    result
}
