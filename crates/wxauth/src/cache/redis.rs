//! The Redis connection instances share state through, and its health.
//!
//! Every command has a short deadline: Redis is a shortcut, never a reason
//! for a request to hang. A failed or slow command marks Redis down; a
//! task pings it every second and marks it up again when it answers. The
//! callers fall back while it is down (per-process limits and code
//! de-duplication, revocation checks against the database) and the change
//! is logged once each way, shown in `/readyz` and in the
//! `wxauth_redis_up` gauge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, Script};

use crate::error::{Error, Result};

/// How long one Redis command may take before Redis counts as down.
const COMMAND_DEADLINE: Duration = Duration::from_millis(300);
/// Key prefix of everything wxauth keeps in Redis.
pub const PREFIX: &str = "wxauth:";

/// A shared Redis: one multiplexed connection that reconnects by itself.
pub struct SharedRedis {
    client: redis::Client,
    conn: ConnectionManager,
    up: AtomicBool,
}

impl std::fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRedis")
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// Connects lazily (the service starts even while Redis is down) and
    /// starts the health task.
    pub fn connect(url: &str) -> Result<Arc<Self>> {
        let client = redis::Client::open(url).map_err(|e| Error::internal_from("redis_url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_DEADLINE))
            .set_response_timeout(Some(COMMAND_DEADLINE))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| Error::internal_from("redis", e))?;
        let shared = Arc::new(Self {
            client,
            conn,
            // Counted down until the first ping answers.
            up: AtomicBool::new(false),
        });
        metrics::gauge!("wxauth_redis_up").set(0.0);
        spawn_health(Arc::downgrade(&shared));
        Ok(shared)
    }

    /// Whether the last command or ping was answered.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// A connection of its own subscribed to `channel`, or None when that
    /// could not be done within a second (the caller tries again later).
    pub(crate) async fn subscribe(&self, channel: &str) -> Option<redis::aio::PubSub> {
        let client = self.client.clone();
        let joined = tokio::time::timeout(Duration::from_secs(1), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        joined.ok().and_then(Result::ok)
    }

    /// Records a command's outcome; logs and publishes a change once.
    pub(crate) fn note(&self, ok: bool) {
        if self.up.swap(ok, Ordering::Relaxed) != ok {
            metrics::gauge!("wxauth_redis_up").set(if ok { 1.0 } else { 0.0 });
            if ok {
                tracing::info!(
                    "Redis is reachable: limits, login codes, revocations and the WeChat token are shared again"
                );
            } else {
                tracing::warn!(
                    "Redis is unreachable: falling back to per-process limits and login-code de-duplication, and to database revocation checks"
                );
            }
        }
    }

    /// Runs one command; `None` when Redis failed or was too slow (it is
    /// then marked down).
    pub(crate) async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Option<T> {
        let mut conn = self.conn.clone();
        let answer = tokio::time::timeout(COMMAND_DEADLINE, cmd.query_async::<T>(&mut conn)).await;
        self.settle(answer)
    }

    /// Runs a Lua script (by its hash, loading it when Redis lacks it).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[i64],
    ) -> Option<T> {
        let mut conn = self.conn.clone();
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let answer =
            tokio::time::timeout(COMMAND_DEADLINE, invocation.invoke_async::<T>(&mut conn)).await;
        self.settle(answer)
    }

    fn settle<T>(
        &self,
        answer: std::result::Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Option<T> {
        match answer {
            Ok(Ok(v)) => {
                self.note(true);
                Some(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis command failed");
                self.note(false);
                None
            }
            Err(_) => {
                tracing::debug!("redis command timed out");
                self.note(false);
                None
            }
        }
    }
}

/// Pings every second while the service runs (it holds only a weak
/// reference, so it ends with the service).
fn spawn_health(shared: std::sync::Weak<SharedRedis>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(redis) = shared.upgrade() else {
                return;
            };
            let _: Option<String> = redis.run(&redis::cmd("PING")).await;
        }
    });
}
