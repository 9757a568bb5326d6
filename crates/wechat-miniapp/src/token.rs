//! Access tokens: cached per app, refreshed ahead of expiry, fetched once.
//!
//! WeChat's access token belongs to the app, not to a process: fetching one
//! with `cgi-bin/token` invalidates the previous one, so N processes each
//! fetching their own take turns breaking each other (40001). The manager
//! keeps the token in a [`TokenCache`] (in memory here; a shared cache can
//! implement the trait), lets one refresh per app run at a time while other
//! callers wait for its result, and on a token error from a business call
//! drops that token, gets a fresh one and retries the call once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::client::WechatClient;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::secret::{AccessToken, AppSecret};

/// A boxed future, so [`TokenCache`] can be used as a trait object.
pub type TokenFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// A token and when it stops working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedToken {
    /// The token.
    pub token: AccessToken,
    /// Expiry in Unix milliseconds (wall-clock, so it can be shared).
    pub expires_at_ms: i64,
}

/// Where tokens are kept between calls. Implement it over Redis or SQL to
/// share one token between processes.
pub trait TokenCache: Send + Sync + 'static {
    /// The app's cached token, if any (expired ones may be returned; the
    /// manager checks expiry itself).
    fn get<'a>(&'a self, appid: &'a str) -> TokenFuture<'a, Option<CachedToken>>;
    /// Stores the app's token, replacing any other.
    fn put<'a>(&'a self, appid: &'a str, token: CachedToken) -> TokenFuture<'a, ()>;
    /// Removes the app's token if it is still `stale` (compare-and-delete, so a
    /// newer token that another caller stored meanwhile survives).
    fn remove_if<'a>(&'a self, appid: &'a str, stale: &'a AccessToken) -> TokenFuture<'a, ()>;
    /// Takes the right to fetch the app's next token for `lease`, so that
    /// one process refreshes while the others wait for its token. `None`:
    /// another holder has it. A cache for one process has nobody to
    /// exclude (the manager already lets one caller per process refresh):
    /// the default always grants.
    fn lock<'a>(&'a self, _appid: &'a str, _lease: Duration) -> TokenFuture<'a, Option<Lease>> {
        Box::pin(async { Ok(Some(Lease(String::new()))) })
    }
    /// Gives a lease back (only if it is still this holder's).
    fn unlock<'a>(&'a self, _appid: &'a str, _lease: &'a Lease) -> TokenFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// The right to refresh an app's token, held until given back or expired.
/// Its text identifies the holder (compare-and-delete on unlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(pub String);

/// How long one refresher may hold the lock before others may try.
const REFRESH_LEASE: Duration = Duration::from_secs(10);

/// A [`TokenCache`] for one process.
#[derive(Debug, Default)]
pub struct MemoryTokenCache {
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl MemoryTokenCache {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, CachedToken>) -> R) -> R {
        let mut guard = self
            .tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard)
    }
}

impl TokenCache for MemoryTokenCache {
    fn get<'a>(&'a self, appid: &'a str) -> TokenFuture<'a, Option<CachedToken>> {
        let found = self.with(|m| m.get(appid).cloned());
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(&'a self, appid: &'a str, token: CachedToken) -> TokenFuture<'a, ()> {
        self.with(|m| m.insert(appid.to_owned(), token));
        Box::pin(async { Ok(()) })
    }

    fn remove_if<'a>(&'a self, appid: &'a str, stale: &'a AccessToken) -> TokenFuture<'a, ()> {
        self.with(|m| {
            if m.get(appid).is_some_and(|t| &t.token == stale) {
                m.remove(appid);
            }
        });
        Box::pin(async { Ok(()) })
    }
}

/// Which WeChat endpoint issues tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenSource {
    /// `POST /cgi-bin/stable_token` in normal mode: the same token for every
    /// caller until its last 5 minutes. The safe default for several processes.
    #[default]
    Stable,
    /// `GET /cgi-bin/token`: a new token each call, invalidating the last.
    Classic,
}

/// Caches, refreshes and hands out access tokens for a set of apps.
pub struct AccessTokenManager {
    client: WechatClient,
    apps: HashMap<String, AppSecret>,
    cache: Arc<dyn TokenCache>,
    source: TokenSource,
    refresh_ahead: Duration,
    clock: Arc<dyn Clock>,
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for AccessTokenManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokenManager")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("source", &self.source)
            .field("refresh_ahead", &self.refresh_ahead)
            .finish_non_exhaustive()
    }
}

impl AccessTokenManager {
    /// A manager for `apps` (appid → secret) with an in-memory cache, stable
    /// tokens, the system clock, and refresh 5 minutes before expiry (when
    /// stable_token starts handing out the next token).
    pub fn new(client: WechatClient, apps: impl IntoIterator<Item = (String, AppSecret)>) -> Self {
        Self {
            client,
            apps: apps.into_iter().collect(),
            cache: Arc::new(MemoryTokenCache::default()),
            source: TokenSource::default(),
            refresh_ahead: Duration::from_secs(300),
            clock: Arc::new(SystemClock),
            refresh_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Uses another cache (for example one shared between processes).
    pub fn with_cache(mut self, cache: Arc<dyn TokenCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Uses another token endpoint.
    pub fn with_source(mut self, source: TokenSource) -> Self {
        self.source = source;
        self
    }

    /// Refreshes this long before expiry.
    pub fn with_refresh_ahead(mut self, ahead: Duration) -> Self {
        self.refresh_ahead = ahead;
        self
    }

    /// Uses another clock (tests move it forward).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The client this manager calls WeChat with.
    pub fn client(&self) -> &WechatClient {
        &self.client
    }

    /// A usable token for `appid`, from the cache or freshly fetched.
    pub async fn token(&self, appid: &str) -> Result<AccessToken> {
        if let Some(fresh) = self.fresh_cached(appid).await? {
            return Ok(fresh);
        }
        self.refresh(appid, None).await
    }

    /// Runs a business call with the app's token; if WeChat refuses the token
    /// (40001, 40014, 42001), drops it, gets a fresh one and runs the call
    /// once more.
    pub async fn with_token<T, F, Fut>(&self, appid: &str, call: F) -> Result<T>
    where
        F: Fn(AccessToken) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let token = self.token(appid).await?;
        match call(token.clone()).await {
            Err(Error::AccessTokenRejected { errcode }) => {
                tracing::info!(
                    appid,
                    errcode,
                    "WeChat refused the access token; refreshing once"
                );
                let fresh = self.refresh(appid, Some(&token)).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    async fn fresh_cached(&self, appid: &str) -> Result<Option<AccessToken>> {
        let ahead = i64::try_from(self.refresh_ahead.as_millis()).unwrap_or(i64::MAX);
        let now = self.clock.now_ms();
        Ok(self
            .cache
            .get(appid)
            .await?
            .filter(|t| t.expires_at_ms.saturating_sub(ahead) > now)
            .map(|t| t.token))
    }

    fn refresh_lock(&self, appid: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(appid.to_owned()).or_default().clone()
    }

    /// Fetches a new token unless another caller did so while this one waited.
    /// `rejected` is a token WeChat refused: it is dropped from the cache and
    /// never handed out again from it.
    async fn refresh(&self, appid: &str, rejected: Option<&AccessToken>) -> Result<AccessToken> {
        let secret = self
            .apps
            .get(appid)
            .ok_or_else(|| Error::Config(format!("no secret configured for appid {appid}")))?;
        let lock = self.refresh_lock(appid);
        let _guard = lock.lock().await;
        if let Some(stale) = rejected {
            self.cache.remove_if(appid, stale).await?;
        }
        // Someone else may have refreshed while we waited for the lock.
        if let Some(fresh) = self.fresh_cached(appid).await? {
            return Ok(fresh);
        }
        // Across processes: one holds the lease and fetches; the others
        // wait for its token to appear in the shared cache.
        let lease = loop {
            if let Some(lease) = self.cache.lock(appid, REFRESH_LEASE).await? {
                break lease;
            }
            let waited = tokio::time::Instant::now();
            while waited.elapsed() < REFRESH_LEASE {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(fresh) = self.fresh_cached(appid).await? {
                    return Ok(fresh);
                }
            }
        };
        let fetched = self.fetch_and_store(appid, secret).await;
        self.cache.unlock(appid, &lease).await?;
        fetched
    }

    async fn fetch_and_store(&self, appid: &str, secret: &AppSecret) -> Result<AccessToken> {
        // The lease holder looks once more: a token stored between our
        // check and the lease is as good as a new one.
        if let Some(fresh) = self.fresh_cached(appid).await? {
            return Ok(fresh);
        }
        let grant = match self.source {
            TokenSource::Stable => {
                self.client
                    .get_stable_access_token(appid, secret, false)
                    .await?
            }
            TokenSource::Classic => self.client.get_access_token(appid, secret).await?,
        };
        let lifetime_ms = i64::try_from(grant.expires_in.saturating_mul(1000)).unwrap_or(i64::MAX);
        let cached = CachedToken {
            token: grant.access_token,
            expires_at_ms: self.clock.now_ms().saturating_add(lifetime_ms),
        };
        tracing::debug!(
            appid,
            expires_in = grant.expires_in,
            "fetched a WeChat access token"
        );
        self.cache.put(appid, cached.clone()).await?;
        Ok(cached.token)
    }
}
