//! The rules of user data: the caller's own profile and documents. The
//! owner always comes from the caller's token, never from the request.
//!
//! [`Data`] is its own service: the store, the clock and the limits, and
//! nothing of `auth` but the [`Caller`](crate::vocab::Caller) a verified
//! token gives.

pub mod any_owner;
pub mod documents;
pub mod profile;
pub mod query;
mod watched;

use std::collections::HashMap;
use std::sync::Arc;

use wechat_miniapp::Clock;

use crate::config::LimitsConfig;
use crate::store::Store;
use crate::vocab::{Access, CollectionRule};
pub use any_owner::{CollectedDocument, Whose};
pub use documents::{Created, Document};
pub use documents::{IfMatch, ListRequest};
pub use watched::{ChangedDocument, WatchedDocument, WatchedQuery};

/// User data: documents and profiles.
#[derive(Clone)]
pub struct Data {
    store: Store,
    clock: Arc<dyn Clock>,
    limits: LimitsConfig,
    collections: Arc<HashMap<String, CollectionRule>>,
    /// Exports running at once in this process (each holds a database
    /// connection for its snapshot).
    exports: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data").finish_non_exhaustive()
    }
}

impl Data {
    /// The service over `store`, with the configured limits.
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        limits: LimitsConfig,
        collections: &[CollectionRule],
    ) -> Self {
        Self {
            store,
            clock,
            exports: Arc::new(tokio::sync::Semaphore::new(
                usize::try_from(limits.exports_at_once).unwrap_or(1).max(1),
            )),
            limits,
            collections: Arc::new(
                collections
                    .iter()
                    .map(|c| (c.name.clone(), c.clone()))
                    .collect(),
            ),
        }
    }

    /// Who reads and writes a collection (`private` unless configured).
    pub fn access(&self, collection: &str) -> Access {
        self.collections
            .get(collection)
            .map_or(Access::Private, |c| c.access)
    }

    /// Creates the configured collections' indexes where missing.
    pub async fn ensure_indexes(&self) -> crate::error::Result<()> {
        let mut specs = Vec::new();
        let mut shared = Vec::new();
        for rule in self.collections.values() {
            if rule.access.shared() {
                shared.push(rule.name.clone());
            }
            for (path, descending) in &rule.indexes {
                specs.push(crate::store::IndexSpec {
                    collection: rule.name.clone(),
                    path: path.clone(),
                    descending: *descending,
                    shared: rule.access.shared(),
                });
            }
        }
        self.store.ensure_indexes(&specs, &shared).await
    }

    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub(crate) use crate::vocab::time::rfc3339;
