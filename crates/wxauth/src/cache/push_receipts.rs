//! Pushes already taken, so each of WeChat's events is acted on once
//! though WeChat sends it again when an answer is late (three times in
//! all) and any instance behind the balancer may get each copy. Keyed by
//! a digest of the decrypted event (the caller's): a retry is encrypted
//! and signed afresh, so only its content is the same. The same key also
//! turns a replayed request (within the timestamp's five minutes) into a
//! no-op.
//!
//! Through Redis (`SET NX` with an expiry) when instances share one; in
//! this process while Redis is down or absent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::redis::{PREFIX, SharedRedis};
use super::wall_ms;

/// Entries kept in process before expired ones are swept.
const SWEEP_AT: usize = 4096;

/// Digests of the pushes taken.
#[derive(Debug)]
pub struct PushReceipts {
    redis: Option<Arc<SharedRedis>>,
    local: Mutex<HashMap<[u8; 32], i64>>,
    keep: Duration,
}

impl PushReceipts {
    /// Receipts kept for `keep` (longer than WeChat's retries and the
    /// timestamp's window).
    pub fn new(redis: Option<Arc<SharedRedis>>, keep: Duration) -> Self {
        Self {
            redis,
            local: Mutex::default(),
            keep,
        }
    }

    fn key(digest: &[u8; 32]) -> String {
        format!("{PREFIX}push:{}", hex::encode(digest))
    }

    fn keep_ms(&self) -> i64 {
        i64::try_from(self.keep.as_millis()).unwrap_or(i64::MAX)
    }

    /// Takes the push: true the first time it is seen (the caller acts on
    /// it and, if that fails, calls [`PushReceipts::release`]), false for
    /// a copy.
    pub async fn take(&self, digest: &[u8; 32]) -> bool {
        if let Some(redis) = &self.redis {
            let set: Option<Option<String>> = redis
                .run(
                    redis::cmd("SET")
                        .arg(Self::key(digest))
                        .arg("1")
                        .arg("NX")
                        .arg("PX")
                        .arg(self.keep_ms()),
                )
                .await;
            if let Some(set) = set {
                return set.is_some();
            }
        }
        let now = wall_ms();
        let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if local.len() >= SWEEP_AT {
            local.retain(|_, until| *until > now);
        }
        match local.get(digest) {
            Some(until) if *until > now => false,
            _ => {
                local.insert(*digest, now.saturating_add(self.keep_ms()));
                true
            }
        }
    }

    /// Gives a taken push back (acting on it failed): WeChat's next copy
    /// is acted on.
    pub async fn release(&self, digest: &[u8; 32]) {
        self.local
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(digest);
        if let Some(redis) = &self.redis {
            let _: Option<i64> = redis.run(redis::cmd("DEL").arg(Self::key(digest))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_a_copy_is_refused_until_released() {
        let receipts = PushReceipts::new(None, Duration::from_secs(60));
        let a = [1u8; 32];
        assert!(receipts.take(&a).await);
        assert!(!receipts.take(&a).await);
        assert!(receipts.take(&[2u8; 32]).await);
        receipts.release(&a).await;
        assert!(receipts.take(&a).await);
        // Past its keeping time a receipt no longer counts.
        let brief = PushReceipts::new(None, Duration::ZERO);
        assert!(brief.take(&a).await);
        assert!(brief.take(&a).await);
    }
}
