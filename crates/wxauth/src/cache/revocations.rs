//! Which sessions are revoked. Checked on every authenticated request, so it
//! must answer without a database round trip. An entry only needs to live as
//! long as an access token of that session could: `until` is the revocation
//! time plus the access-token lifetime; after that the token has expired
//! anyway and the entry is dropped.
//!
//! With several instances ([`SharedRevocations`]) each keeps the set in
//! memory and learns of the others' revocations from a Redis channel; the
//! database stays the truth (the auth layer re-reads recent revocations
//! from it at a short interval and whenever the channel was re-joined, and
//! checks it directly while the channel cannot be trusted).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::Notify;

use super::redis::{PREFIX, SharedRedis};
use super::wall_ms;
use crate::error::Result;

/// A boxed future, so [`Revocations`] can be a trait object.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The set of revoked sessions every instance sees.
pub trait Revocations: Send + Sync + 'static {
    /// This instance revoked a session: marks it revoked until `until_ms`
    /// and tells the other instances. `now_ms` lets the cache drop entries
    /// whose tokens have all expired.
    fn revoke<'a>(&'a self, session_id: &'a str, until_ms: i64, now_ms: i64)
    -> CacheFuture<'a, ()>;
    /// A revocation learned elsewhere (the database): recorded here only.
    fn remember(&self, session_id: &str, until_ms: i64, now_ms: i64);
    /// Whether the session is revoked at `now_ms`.
    fn is_revoked<'a>(&'a self, session_id: &'a str, now_ms: i64) -> CacheFuture<'a, bool>;
    /// Whether every revocation reaches this set within moments. When not
    /// (the channel between instances is down), a session this set does
    /// not know as revoked must be checked in the database.
    fn complete(&self) -> bool {
        true
    }
    /// Wakes whoever re-reads revocations from the database, when messages
    /// may have been missed (the channel was joined again).
    fn resync_wanted(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// Revocations for one process. Sessions ended by another process on the
/// same database (the operator's `wxauth admin user revoke|delete`) are
/// read from the database every `REVOCATION_RESYNC` (see `resync_wanted`).
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    entries: Mutex<HashMap<String, i64>>,
    resync: Arc<Notify>,
}

impl MemoryRevocations {
    fn insert(&self, session_id: &str, until_ms: i64, now_ms: i64) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 1024 {
            // Entries past their `until` can no longer match a valid token.
            entries.retain(|_, until| *until > now_ms);
        }
        let until = entries.entry(session_id.to_owned()).or_insert(until_ms);
        *until = (*until).max(until_ms);
    }
}

impl Revocations for MemoryRevocations {
    fn revoke<'a>(
        &'a self,
        session_id: &'a str,
        until_ms: i64,
        now_ms: i64,
    ) -> CacheFuture<'a, ()> {
        self.insert(session_id, until_ms, now_ms);
        Box::pin(async { Ok(()) })
    }

    fn remember(&self, session_id: &str, until_ms: i64, now_ms: i64) {
        self.insert(session_id, until_ms, now_ms);
    }

    fn resync_wanted(&self) -> Option<Arc<Notify>> {
        // Never notified: the periodic re-read is what is wanted here.
        Some(self.resync.clone())
    }

    fn is_revoked<'a>(&'a self, session_id: &'a str, now_ms: i64) -> CacheFuture<'a, bool> {
        let revoked = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(session_id)
            .is_some_and(|until| *until > now_ms);
        Box::pin(async move { Ok(revoked) })
    }
}

/// The Redis channel revocations are announced on.
fn channel() -> String {
    format!("{PREFIX}revoked")
}

/// Revocations shared by every instance: a set in memory per instance,
/// told of the others' revocations over Redis pub/sub.
pub struct SharedRevocations {
    local: MemoryRevocations,
    redis: Arc<SharedRedis>,
    /// The subscription is live (messages arrive).
    listening: AtomicBool,
    resync: Arc<Notify>,
}

impl std::fmt::Debug for SharedRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRevocations")
            .field("listening", &self.listening.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl SharedRevocations {
    /// Starts listening on the channel (and keeps re-joining it).
    pub fn start(redis: Arc<SharedRedis>) -> Arc<Self> {
        let shared = Arc::new(Self {
            local: MemoryRevocations::default(),
            redis,
            listening: AtomicBool::new(false),
            resync: Arc::new(Notify::new()),
        });
        tokio::spawn(listen(Arc::downgrade(&shared)));
        shared
    }
}

impl Revocations for SharedRevocations {
    fn revoke<'a>(
        &'a self,
        session_id: &'a str,
        until_ms: i64,
        now_ms: i64,
    ) -> CacheFuture<'a, ()> {
        self.local.insert(session_id, until_ms, now_ms);
        Box::pin(async move {
            // Best effort: an instance that misses this learns it from the
            // database within the resync interval (or checks the database
            // while its channel is down).
            let message = format!("{session_id} {until_ms}");
            let _: Option<i64> = self
                .redis
                .run(redis::cmd("PUBLISH").arg(channel()).arg(message))
                .await;
            Ok(())
        })
    }

    fn remember(&self, session_id: &str, until_ms: i64, now_ms: i64) {
        self.local.insert(session_id, until_ms, now_ms);
    }

    fn is_revoked<'a>(&'a self, session_id: &'a str, now_ms: i64) -> CacheFuture<'a, bool> {
        self.local.is_revoked(session_id, now_ms)
    }

    fn complete(&self) -> bool {
        self.listening.load(Ordering::Relaxed) && self.redis.is_up()
    }

    fn resync_wanted(&self) -> Option<Arc<Notify>> {
        Some(self.resync.clone())
    }
}

/// Joins the channel, applies every message, and joins again after a
/// failure; each (re)join asks for a resync from the database, since
/// messages sent meanwhile are lost.
async fn listen(shared: std::sync::Weak<SharedRevocations>) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(this) = shared.upgrade() else {
            return;
        };
        let redis = this.redis.clone();
        drop(this);
        let Some(pubsub) = redis.subscribe(&channel()).await else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        };
        pause = Duration::from_millis(100);
        if let Some(this) = shared.upgrade() {
            this.listening.store(true, Ordering::Relaxed);
            this.resync.notify_one();
            tracing::debug!("listening for revocations from other instances");
        }
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Some(this) = shared.upgrade() else {
                return;
            };
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((sid, until)) = text.split_once(' ')
                && let Ok(until) = until.parse::<i64>()
            {
                this.local.insert(sid, until, wall_ms());
            }
        }
        // The connection ended: until joined again, the set is incomplete.
        if let Some(this) = shared.upgrade() {
            this.listening.store(false, Ordering::Relaxed);
            this.redis.note(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn revoked_until_expiry_and_pruned_after() {
        let r = MemoryRevocations::default();
        r.revoke("s1", 1_000, 0).await.unwrap();
        assert!(r.is_revoked("s1", 999).await.unwrap());
        assert!(!r.is_revoked("s1", 1_000).await.unwrap());
        assert!(!r.is_revoked("s2", 0).await.unwrap());
        for i in 0..2000 {
            r.revoke(&format!("x{i}"), 5_000 + i, 4_000 + i)
                .await
                .unwrap();
        }
        let len = r.entries.lock().unwrap().len();
        assert!(len < 2000, "expired entries are dropped: {len}");
        assert!(r.is_revoked("x1999", 6_000).await.unwrap());
    }
}
