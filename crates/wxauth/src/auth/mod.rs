//! The rules of identity: who a request is, how sessions start, rotate and
//! end, and what WeChat-derived data a user may see. The HTTP layer calls
//! these; they call the store, the caches and WeChat.

mod accounts;
mod content;
mod phone;
pub mod rate_limit;
pub mod revocation_sync;
pub mod seal;
mod service_keys;
mod sessions;
pub mod tokens;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wechat_miniapp::{AccessTokenManager, AppSecret, Clock, WechatClient};

use crate::cache::{LoginCodes, Revocations, SharedCodes, SharedRedis};
use crate::config::Settings;
use crate::error::Result;
use crate::store::Store;
pub use crate::vocab::Caller;
pub use accounts::{Account, FindBy, ResealProgress};
pub use content::MessageToSend;
pub use phone::PhoneNumber;
use seal::Sealer;
pub use service_keys::{Introspection, ServiceCaller, ServiceKeys};
pub use sessions::{Me, Session, User};
use tokens::TokenIssuer;

/// Everything the rules need. Built once at start-up, shared by requests.
pub struct Auth {
    store: Store,
    wechat: WechatClient,
    wechat_tokens: AccessTokenManager,
    apps: HashMap<String, AppSecret>,
    default_appid: Option<String>,
    issuer: TokenIssuer,
    sealer: Sealer,
    revocations: Arc<dyn Revocations>,
    redis: Option<Arc<SharedRedis>>,
    login_codes: LoginCodes,
    shared_codes: Option<SharedCodes>,
    login_limits: rate_limit::LoginLimits,
    /// Data requests per user.
    data_limits: rate_limit::UserRequestLimits,
    service_keys: ServiceKeys,
    clock: Arc<dyn Clock>,
    refresh_ttl: Duration,
    access_ttl: Duration,
    upstream_deadline: Duration,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Wires the rules to their dependencies. With `redis`, what several
    /// instances must share goes through it (see `cache`).
    pub fn new(
        settings: &Settings,
        store: Store,
        revocations: Arc<dyn Revocations>,
        redis: Option<Arc<SharedRedis>>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        let wechat =
            WechatClient::new(settings.wechat.clone()).map_err(crate::error::Error::internal)?;
        let apps: HashMap<String, AppSecret> = settings
            .apps
            .iter()
            .map(|a| (a.appid.clone(), a.secret.clone()))
            .collect();
        let mut wechat_tokens = AccessTokenManager::new(wechat.clone(), apps.clone())
            .with_source(settings.token_source)
            .with_clock(clock.clone());
        if let Some(r) = &redis {
            wechat_tokens =
                wechat_tokens.with_cache(Arc::new(crate::cache::RedisTokenCache::new(r.clone())));
        }
        Ok(Self {
            default_appid: settings.default_appid.clone(),
            issuer: TokenIssuer::new(
                &settings.signing_keys,
                &settings.issuer,
                settings.access_ttl,
                clock.clone(),
            )?,
            sealer: Sealer::new(&settings.encryption_keys)?,
            // A repeated code is answered like the first only briefly: long
            // enough for a client's retry after a lost answer, never the
            // code's whole lifetime (see limits.login_code_replay_secs).
            login_codes: LoginCodes::new(
                i64::try_from(settings.limits.login_code_replay_secs)
                    .unwrap_or(300)
                    .saturating_mul(1000),
            ),
            // Across instances: outcomes kept for the same window; a claim
            // whose instance died is freed once its exchange would have
            // timed out anyway.
            shared_codes: redis.as_ref().map(|r| {
                SharedCodes::new(
                    r.clone(),
                    Duration::from_secs(settings.limits.login_code_replay_secs),
                    settings.wechat.timeout + Duration::from_secs(2),
                )
            }),
            data_limits: rate_limit::UserRequestLimits::new(
                settings.limits.data_requests_per_user_per_minute,
                redis
                    .clone()
                    .map(crate::cache::shared_limits::SharedLimits::new),
            ),
            login_limits: rate_limit::LoginLimits::new(&(&settings.limits).into()).shared(
                redis
                    .clone()
                    .map(crate::cache::shared_limits::SharedLimits::new),
            ),
            service_keys: ServiceKeys::new(
                settings.service_keys.clone(),
                settings.limits.service_key_failures_per_ip_per_minute,
            ),
            store,
            wechat,
            wechat_tokens,
            apps,
            revocations,
            redis,
            clock,
            refresh_ttl: settings.refresh_ttl,
            access_ttl: settings.access_ttl,
            // A whole upstream interaction (retries included) gets the
            // configured per-call timeout: a client waits that long at most.
            upstream_deadline: settings.wechat.timeout,
        })
    }

    /// Whether the database answers (for readiness checks).
    pub async fn ping_store(&self) -> Result<()> {
        self.store.ping().await
    }

    /// Admits one data request of `caller` (see
    /// [`rate_limit::UserRequestLimits`]).
    pub async fn admit_data_request(&self, caller: &Caller) -> Result<()> {
        self.data_limits.admit(&caller.user_id).await
    }

    /// The service's clock, Unix milliseconds.
    fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Loads revocations younger than an access token from the database
    /// (after a restart the in-process cache is empty).
    pub async fn warm_revocations(&self) -> Result<usize> {
        let ttl_ms = i64::try_from(self.access_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let revoked = self.store.revoked_since(self.now_ms() - ttl_ms).await?;
        for (session_id, at) in &revoked {
            self.revocations
                .remember(session_id, at + ttl_ms, self.now_ms());
        }
        Ok(revoked.len())
    }

    /// The access-token issuer (its public keys, its `iss`).
    pub fn tokens(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// Redis, when instances share state through it.
    pub fn redis(&self) -> Option<&Arc<SharedRedis>> {
        self.redis.as_ref()
    }

    /// Keeps this instance's revocation set in step with the database (see
    /// [`revocation_sync`]): a revocation whose broadcast was lost, or that
    /// another process (the operator's CLI) made, is refused here within
    /// `REVOCATION_RESYNC`, whatever the clocks of the instances say.
    pub fn spawn_revocation_sync(&self) {
        let ttl_ms = i64::try_from(self.access_ttl.as_millis()).unwrap_or(i64::MAX / 2);
        revocation_sync::spawn(
            self.store.clone(),
            self.revocations.clone(),
            self.clock.clone(),
            ttl_ms,
        );
    }
}

/// How often an instance re-reads recent revocations from the database
/// when it shares state with others (the bound on how long a lost
/// revocation message can matter).
pub const REVOCATION_RESYNC: Duration = Duration::from_millis(500);
