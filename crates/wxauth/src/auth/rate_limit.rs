//! Login rate limits, per client IP and per app (GCRA via `governor`). Logins
//! cost a WeChat call each, and WeChat limits the app, so a flood from one
//! address must not spend the whole app's quota.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{Error, Result};

/// The login limits.
pub struct LoginLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_app: DefaultKeyedRateLimiter<String>,
    checks: AtomicU32,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimits").finish_non_exhaustive()
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

impl LoginLimits {
    /// `per_ip_per_minute` logins per address (bursts up to that many), and
    /// `per_app_per_second` per app.
    pub fn new(per_ip_per_minute: u32, per_app_per_second: u32) -> Self {
        Self {
            per_ip: RateLimiter::keyed(Quota::per_minute(nonzero(per_ip_per_minute))),
            per_app: RateLimiter::keyed(Quota::per_second(nonzero(per_app_per_second))),
            checks: AtomicU32::new(0),
        }
    }

    /// Counts one login attempt, or says when to try again.
    pub fn check(&self, ip: IpAddr, appid: &str) -> Result<()> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 0 {
            self.per_ip.retain_recent();
            self.per_app.retain_recent();
        }
        let now = DefaultClock::default().now();
        if let Err(not_until) = self.per_ip.check_key(&ip) {
            return Err(limited(
                "too many logins from this address",
                not_until.wait_time_from(now),
            ));
        }
        if let Err(not_until) = self.per_app.check_key(&appid.to_owned()) {
            return Err(limited(
                "too many logins for this app right now",
                not_until.wait_time_from(now),
            ));
        }
        Ok(())
    }
}

fn limited(what: &str, wait: Duration) -> Error {
    let retry_after = Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
        .max(Duration::from_secs(1));
    Error::RateLimited {
        message: format!("{what}; try again in {} s", retry_after.as_secs()),
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_and_per_app() {
        let l = LoginLimits::new(2, 1000);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(l.check(a, "wx1").is_ok());
        assert!(l.check(a, "wx1").is_ok());
        match l.check(a, "wx1") {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        assert!(
            l.check(b, "wx1").is_ok(),
            "other addresses are not affected"
        );
        let app = LoginLimits::new(1000, 1);
        assert!(app.check(a, "wx1").is_ok());
        assert!(app.check(b, "wx1").is_err());
        assert!(app.check(b, "wx2").is_ok());
    }
}
