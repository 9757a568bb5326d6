//! Which sessions are revoked. Checked on every authenticated request, so it
//! must answer without a database round trip. An entry only needs to live as
//! long as an access token of that session could: `until` is the revocation
//! time plus the access-token lifetime; after that the token has expired
//! anyway and the entry is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use crate::error::Result;

/// A boxed future, so [`Revocations`] can be a trait object.
pub type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The set of revoked sessions every instance sees.
pub trait Revocations: Send + Sync + 'static {
    /// Marks a session revoked until `until_ms`; `now_ms` lets the cache drop
    /// entries whose tokens have all expired.
    fn revoke<'a>(&'a self, session_id: &'a str, until_ms: i64, now_ms: i64)
    -> CacheFuture<'a, ()>;
    /// Whether the session is revoked at `now_ms`.
    fn is_revoked<'a>(&'a self, session_id: &'a str, now_ms: i64) -> CacheFuture<'a, bool>;
}

/// Revocations for one process.
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    entries: Mutex<HashMap<String, i64>>,
}

impl Revocations for MemoryRevocations {
    fn revoke<'a>(
        &'a self,
        session_id: &'a str,
        until_ms: i64,
        now_ms: i64,
    ) -> CacheFuture<'a, ()> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= 1024 {
            // Entries past their `until` can no longer match a valid token.
            entries.retain(|_, until| *until > now_ms);
        }
        entries.insert(session_id.to_owned(), until_ms);
        Box::pin(async { Ok(()) })
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
