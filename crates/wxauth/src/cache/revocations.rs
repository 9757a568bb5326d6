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
    /// Marks a session revoked until `until_ms`.
    fn revoke<'a>(&'a self, session_id: &'a str, until_ms: i64) -> CacheFuture<'a, ()>;
    /// Whether the session is revoked at `now_ms`.
    fn is_revoked<'a>(&'a self, session_id: &'a str, now_ms: i64) -> CacheFuture<'a, bool>;
}

/// Revocations for one process.
#[derive(Debug, Default)]
pub struct MemoryRevocations {
    entries: Mutex<HashMap<String, i64>>,
}

impl Revocations for MemoryRevocations {
    fn revoke<'a>(&'a self, session_id: &'a str, until_ms: i64) -> CacheFuture<'a, ()> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            // Keep the map bounded by what can still matter.
            entries.retain(|_, until| *until > until_ms - 7 * 24 * 3600 * 1000);
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
