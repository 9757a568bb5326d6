//! WeChat's access token in Redis, so every instance uses the one token
//! and one instance at a time fetches the next (a lease: `SET NX PX` with
//! a random holder id, given back by compare-and-delete). While Redis does
//! not answer, each instance keeps its own token (the in-process cache),
//! as a single instance would.

use std::sync::Arc;
use std::time::Duration;

use wechat_miniapp::{AccessToken, CachedToken, Lease, MemoryTokenCache, TokenCache, TokenFuture};

use super::redis::{PREFIX, SharedRedis};
use super::wall_ms;

/// Deletes KEYS[1] if it still holds ARGV[1].
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The token cache shared through Redis, with a per-process fallback.
pub struct RedisTokenCache {
    redis: Arc<SharedRedis>,
    local: MemoryTokenCache,
}

impl std::fmt::Debug for RedisTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTokenCache").finish_non_exhaustive()
    }
}

impl RedisTokenCache {
    /// A cache on `redis`.
    pub fn new(redis: Arc<SharedRedis>) -> Self {
        Self {
            redis,
            local: MemoryTokenCache::default(),
        }
    }

    fn token_key(appid: &str) -> String {
        format!("{PREFIX}wxtoken:{appid}")
    }

    fn lock_key(appid: &str) -> String {
        format!("{PREFIX}wxtoken-lock:{appid}")
    }

    /// Deletes `key` only while it still holds `value`.
    async fn compare_and_delete(&self, key: &str, value: &str) {
        let _: Option<i64> = self
            .redis
            .run(
                redis::cmd("EVAL")
                    .arg(COMPARE_AND_DELETE)
                    .arg(1)
                    .arg(key)
                    .arg(value),
            )
            .await;
    }
}

impl TokenCache for RedisTokenCache {
    fn get<'a>(&'a self, appid: &'a str) -> TokenFuture<'a, Option<CachedToken>> {
        Box::pin(async move {
            let stored: Option<Option<String>> = self
                .redis
                .run(redis::cmd("GET").arg(Self::token_key(appid)))
                .await;
            match stored {
                // Stored as "<expires_at_ms> <token>".
                Some(Some(text)) => Ok(text.split_once(' ').and_then(|(at, token)| {
                    Some(CachedToken {
                        expires_at_ms: at.parse().ok()?,
                        token: AccessToken::new(token),
                    })
                })),
                Some(None) => Ok(None),
                None => self.local.get(appid).await,
            }
        })
    }

    fn put<'a>(&'a self, appid: &'a str, token: CachedToken) -> TokenFuture<'a, ()> {
        Box::pin(async move {
            let ttl_ms = (token.expires_at_ms - wall_ms()).max(1000);
            let value = format!("{} {}", token.expires_at_ms, token.token.expose());
            self.local.put(appid, token).await?;
            let _: Option<String> = self
                .redis
                .run(
                    redis::cmd("SET")
                        .arg(Self::token_key(appid))
                        .arg(value)
                        .arg("PX")
                        .arg(ttl_ms),
                )
                .await;
            Ok(())
        })
    }

    fn remove_if<'a>(&'a self, appid: &'a str, stale: &'a AccessToken) -> TokenFuture<'a, ()> {
        Box::pin(async move {
            self.local.remove_if(appid, stale).await?;
            let Some(Some(text)) = self
                .redis
                .run::<Option<String>>(redis::cmd("GET").arg(Self::token_key(appid)))
                .await
            else {
                return Ok(());
            };
            if text
                .split_once(' ')
                .is_some_and(|(_, t)| t == stale.expose())
            {
                // Deleted only if no other instance stored a newer one since.
                self.compare_and_delete(&Self::token_key(appid), &text)
                    .await;
            }
            Ok(())
        })
    }

    fn lock<'a>(&'a self, appid: &'a str, lease: Duration) -> TokenFuture<'a, Option<Lease>> {
        Box::pin(async move {
            let holder = uuid::Uuid::now_v7().to_string();
            let taken: Option<Option<String>> = self
                .redis
                .run(
                    redis::cmd("SET")
                        .arg(Self::lock_key(appid))
                        .arg(&holder)
                        .arg("NX")
                        .arg("PX")
                        .arg(u64::try_from(lease.as_millis()).unwrap_or(10_000)),
                )
                .await;
            Ok(match taken {
                Some(Some(_)) => Some(Lease(holder)),
                Some(None) => None,
                // Redis down: this process refreshes for itself.
                None => Some(Lease(String::new())),
            })
        })
    }

    fn unlock<'a>(&'a self, appid: &'a str, lease: &'a Lease) -> TokenFuture<'a, ()> {
        Box::pin(async move {
            if !lease.0.is_empty() {
                self.compare_and_delete(&Self::lock_key(appid), &lease.0)
                    .await;
            }
            Ok(())
        })
    }
}
