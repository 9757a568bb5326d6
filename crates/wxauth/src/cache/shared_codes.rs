//! Login-code de-duplication across instances. The first instance to see a
//! code claims it in Redis (`SET NX` with a lease) and exchanges it; the
//! others wait for the claim to turn into the outcome (the user id, never a
//! token) and answer from it. The code itself is never stored: the key is
//! a hash of (appid, code), as in the per-process [`super::LoginCodes`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::LoginIdentity;
use super::redis::{PREFIX, SharedRedis};

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This instance exchanges the code, then calls `finish` or `abandon`.
    Won,
    /// Another instance exchanged it: this is who it was.
    Done(LoginIdentity),
    /// Another instance holds the claim and did not finish in time.
    StillPending,
    /// Redis did not answer: de-duplicate in this process only.
    Unavailable,
}

/// Code claims in Redis.
#[derive(Debug, Clone)]
pub struct SharedCodes {
    redis: Arc<SharedRedis>,
    replay: Duration,
    lease: Duration,
}

const PENDING: &str = "p";

impl SharedCodes {
    /// Outcomes are kept for `replay` (the replay window); a claim whose
    /// holder vanished is freed after `lease`.
    pub fn new(redis: Arc<SharedRedis>, replay: Duration, lease: Duration) -> Self {
        Self {
            redis,
            replay,
            lease,
        }
    }

    fn key(appid: &str, code: &str) -> String {
        let mut h = Sha256::new();
        h.update(appid.as_bytes());
        h.update([0]);
        h.update(code.as_bytes());
        format!("{PREFIX}code:{}", hex::encode(h.finalize()))
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Claims the code, or waits (at most `wait`) for the instance that
    /// holds it to finish.
    pub async fn claim(&self, appid: &str, code: &str, wait: Duration) -> Claim {
        let key = Self::key(appid, code);
        let deadline = Instant::now() + wait;
        loop {
            let set: Option<Option<String>> = self
                .redis
                .run(
                    redis::cmd("SET")
                        .arg(&key)
                        .arg(PENDING)
                        .arg("NX")
                        .arg("PX")
                        .arg(Self::ms(self.lease)),
                )
                .await;
            match set {
                None => return Claim::Unavailable,
                Some(Some(_)) => return Claim::Won,
                Some(None) => {}
            }
            let current: Option<Option<String>> = self.redis.run(redis::cmd("GET").arg(&key)).await;
            match current {
                None => return Claim::Unavailable,
                Some(Some(v)) if v != PENDING => {
                    if let Some(identity) = parse_outcome(&v) {
                        return Claim::Done(identity);
                    }
                }
                // Pending elsewhere, or just freed: look again shortly.
                Some(_) => {}
            }
            if Instant::now() >= deadline {
                return Claim::StillPending;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    }

    /// Publishes the outcome of a won claim for the replay window.
    pub async fn finish(&self, appid: &str, code: &str, identity: &LoginIdentity) {
        let value = format!("d:{}:{}", u8::from(identity.new_user), identity.user_id);
        let _: Option<String> = self
            .redis
            .run(
                redis::cmd("SET")
                    .arg(Self::key(appid, code))
                    .arg(value)
                    .arg("PX")
                    .arg(Self::ms(self.replay)),
            )
            .await;
    }

    /// Frees a won claim whose exchange failed (the next request tries).
    pub async fn abandon(&self, appid: &str, code: &str) {
        let _: Option<i64> = self
            .redis
            .run(redis::cmd("DEL").arg(Self::key(appid, code)))
            .await;
    }
}

fn parse_outcome(value: &str) -> Option<LoginIdentity> {
    let rest = value.strip_prefix("d:")?;
    let (new_user, user_id) = rest.split_once(':')?;
    Some(LoginIdentity {
        user_id: user_id.to_owned(),
        new_user: new_user == "1",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_and_keys_hide_the_code() {
        let who = parse_outcome("d:1:0192-user");
        assert_eq!(
            who,
            Some(LoginIdentity {
                user_id: "0192-user".into(),
                new_user: true
            })
        );
        assert_eq!(parse_outcome("p"), None);
        let key = SharedCodes::key("wx1", "secret-code-123");
        assert!(!key.contains("secret-code-123"));
        assert!(key.starts_with("wxauth:code:"));
    }
}
