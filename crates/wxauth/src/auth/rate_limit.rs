//! Login limits. A login costs a WeChat call, and WeChat limits the app, so
//! the app's budget is the shared resource to protect: no single address
//! may spend it. In the order they are checked (the code's shape is checked
//! before any of them, so malformed codes cost nothing):
//!
//! 1. **per address** (GCRA via `governor`): `login_per_ip_per_minute`;
//! 2. **failed logins per address**: an address whose codes WeChat refused
//!    (or whose refresh tokens were unknown, expired or reused) more than
//!    `login_failures_per_ip_per_minute` times is refused for a while
//!    before it can spend anything else (garbage codes cost one WeChat
//!    call each, garbage refresh tokens one indexed read, and then stop
//!    costing);
//! 3. **in flight per address**: at most `login_in_flight_per_ip` code
//!    exchanges at once, so a flood cannot put many calls on the app's
//!    budget before its failures are counted;
//! 4. **per app**: `login_per_app_per_second`, the budget itself.
//!
//! IPv6 addresses count by their /64 (one subscriber usually holds a whole
//! /64 and could otherwise rotate through it).
//!
//! With Redis (several instances), 1, 2 and 4 are counted there, across all
//! instances ([`SharedLimits`]); while Redis does not answer they are
//! counted here, per process. The in-flight cap (3) is always per process:
//! it bounds what one address can start at one instance at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cache::shared_limits::{Rate, SharedLimits, Wait};
use crate::config::LimitsConfig;
use crate::error::{Error, Result};

/// The login limits of one process.
pub struct LoginLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_app: DefaultKeyedRateLimiter<String>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused after too many failures, until the instant given.
    penalties: Mutex<Penalties>,
    in_flight: Mutex<HashMap<IpAddr, u32>>,
    max_in_flight: u32,
    checks: AtomicU32,
    shared: Option<SharedLimits>,
    rates: LoginLimitSettings,
}

#[derive(Default)]
struct Penalties {
    until: HashMap<IpAddr, Instant>,
    /// Size after the last sweep: sweep again when it has doubled, so the
    /// work per failure stays constant on average.
    swept_at: usize,
}

impl std::fmt::Debug for LoginLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimits").finish_non_exhaustive()
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN)
}

/// The key an address counts under: IPv4 as is, IPv6 by its /64.
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Holds one of an address's in-flight exchange slots; frees it on drop.
#[must_use]
pub struct InFlight<'a> {
    limits: &'a LoginLimits,
    key: IpAddr,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self
            .limits
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

impl LoginLimits {
    /// The limits of `limits`.
    pub fn new(limits: &LoginLimitSettings) -> Self {
        Self {
            per_ip: RateLimiter::keyed(Quota::per_minute(nonzero(limits.per_ip_per_minute))),
            per_app: RateLimiter::keyed(Quota::per_second(nonzero(limits.per_app_per_second))),
            failures: RateLimiter::keyed(Quota::per_minute(nonzero(
                limits.failures_per_ip_per_minute,
            ))),
            penalties: Mutex::new(Penalties::default()),
            in_flight: Mutex::new(HashMap::new()),
            max_in_flight: limits.in_flight_per_ip.max(1),
            checks: AtomicU32::new(0),
            shared: None,
            rates: *limits,
        }
    }

    /// Counts across instances in Redis while it answers.
    pub fn shared(mut self, shared: Option<SharedLimits>) -> Self {
        self.shared = shared;
        self
    }

    fn ip_rate(&self) -> Rate {
        Rate::per(self.rates.per_ip_per_minute, Duration::from_secs(60))
    }

    fn app_rate(&self) -> Rate {
        Rate::per(self.rates.per_app_per_second, Duration::from_secs(1))
    }

    fn failure_rate(&self) -> Rate {
        Rate::per(
            self.rates.failures_per_ip_per_minute,
            Duration::from_secs(60),
        )
    }

    /// The address check (rate, then penalty) across instances; `None`
    /// when it must be counted here.
    async fn shared_address(&self, key: IpAddr) -> Option<Result<()>> {
        let shared = self.shared.as_ref().filter(|s| s.is_up())?;
        let answer = shared
            .admit_address(&key.to_string(), self.ip_rate())
            .await?;
        Some(answer.map_err(|wait| match wait {
            Wait::Rate(d) => limited("too many logins from this address", d),
            Wait::Penalty(d) => limited("too many failed logins from this address", d),
        }))
    }

    /// Admits one login attempt from `ip` for `appid`, or says when to try
    /// again. The returned slot must be held until the code exchange ends.
    pub async fn admit(&self, ip: IpAddr, appid: &str) -> Result<InFlight<'_>> {
        let key = limit_key(ip);
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.per_ip.retain_recent();
            self.per_app.retain_recent();
            self.failures.retain_recent();
        }
        // One clock for the limiters: building one per call re-calibrates it.
        let now = self.per_ip.clock().now();
        match self.shared_address(key).await {
            Some(answer) => answer?,
            None => {
                if let Err(not_until) = self.per_ip.check_key(&key) {
                    return Err(limited(
                        "too many logins from this address",
                        not_until.wait_time_from(now),
                    ));
                }
                if let Some(until) = self.penalty(&key) {
                    let left = until.saturating_duration_since(Instant::now());
                    if !left.is_zero() {
                        return Err(limited("too many failed logins from this address", left));
                    }
                }
            }
        }
        let slot = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= self.max_in_flight {
                None
            } else {
                *n += 1;
                Some(InFlight { limits: self, key })
            }
        };
        let slot = slot.ok_or_else(|| {
            limited(
                "too many logins in progress from this address",
                Duration::from_secs(1),
            )
        })?;
        let shared_app = match self.shared.as_ref().filter(|s| s.is_up()) {
            Some(shared) => shared.admit_app(appid, self.app_rate()).await,
            None => None,
        };
        match shared_app {
            Some(Ok(())) => {}
            Some(Err(wait)) => {
                return Err(limited("too many logins for this app right now", wait));
            }
            None => {
                if let Err(not_until) = self.per_app.check_key(&appid.to_owned()) {
                    return Err(limited(
                        "too many logins for this app right now",
                        not_until.wait_time_from(now),
                    ));
                }
            }
        }
        Ok(slot)
    }

    /// Refuses `ip` while it is under a penalty for failures (refused
    /// login codes or refresh tokens), without counting anything: what a
    /// refresh checks before it costs a database read.
    pub async fn check_penalty(&self, ip: IpAddr) -> Result<()> {
        let key = limit_key(ip);
        let shared = match self.shared.as_ref().filter(|s| s.is_up()) {
            Some(shared) => shared.penalty(&key.to_string()).await,
            None => None,
        };
        let left = match shared {
            Some(left) => left,
            None => self
                .penalty(&key)
                .map(|until| until.saturating_duration_since(Instant::now()))
                .filter(|left| !left.is_zero()),
        };
        match left {
            Some(left) => Err(limited("too many failed attempts from this address", left)),
            None => Ok(()),
        }
    }

    /// Counts a code WeChat refused. Past the failure limit, the address is
    /// refused until its failure budget has refilled by one.
    pub async fn record_failure(&self, ip: IpAddr) {
        let key = limit_key(ip);
        if let Some(shared) = self.shared.as_ref().filter(|s| s.is_up())
            && shared
                .record_failure(&key.to_string(), self.failure_rate())
                .await
        {
            return;
        }
        let now = self.failures.clock().now();
        if let Err(not_until) = self.failures.check_key(&key) {
            let wall = Instant::now();
            let until = wall + not_until.wait_time_from(now);
            let mut p = self.penalties.lock().unwrap_or_else(|p| p.into_inner());
            p.until.insert(key, until);
            if p.until.len() > 2 * p.swept_at.max(512) {
                p.until.retain(|_, until| *until > wall);
                p.swept_at = p.until.len();
            }
        }
    }

    fn penalty(&self, key: &IpAddr) -> Option<Instant> {
        let p = self.penalties.lock().unwrap_or_else(|p| p.into_inner());
        p.until.get(key).copied()
    }
}

/// The numbers [`LoginLimits`] needs.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimitSettings {
    /// Logins per address per minute.
    pub per_ip_per_minute: u32,
    /// Logins per app per second.
    pub per_app_per_second: u32,
    /// Refused codes per address per minute before it is refused.
    pub failures_per_ip_per_minute: u32,
    /// Code exchanges in flight per address.
    pub in_flight_per_ip: u32,
}

impl From<&LimitsConfig> for LoginLimitSettings {
    fn from(l: &LimitsConfig) -> Self {
        Self {
            per_ip_per_minute: l.login_per_ip_per_minute,
            per_app_per_second: l.login_per_app_per_second,
            failures_per_ip_per_minute: l.login_failures_per_ip_per_minute,
            in_flight_per_ip: l.login_in_flight_per_ip,
        }
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

/// Data requests per user (`limits.data_requests_per_user_per_minute`,
/// all of it available at once): generous, so only a runaway client or a
/// stolen token meets it. Counted in Redis across instances while it
/// answers, else per process.
pub struct UserRequestLimits {
    per_user: DefaultKeyedRateLimiter<String>,
    rate: Rate,
    checks: AtomicU32,
    shared: Option<SharedLimits>,
}

impl std::fmt::Debug for UserRequestLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRequestLimits").finish_non_exhaustive()
    }
}

impl UserRequestLimits {
    /// `per_minute` requests per user per minute.
    pub fn new(per_minute: u32, shared: Option<SharedLimits>) -> Self {
        Self {
            per_user: RateLimiter::keyed(Quota::per_minute(nonzero(per_minute))),
            rate: Rate::per(per_minute, Duration::from_secs(60)),
            checks: AtomicU32::new(0),
            shared,
        }
    }

    /// Admits one request of `user_id`, or says when to try again.
    pub async fn admit(&self, user_id: &str) -> Result<()> {
        let limited = |wait: Duration| Error::RateLimited {
            message:
                "too many data requests for this user (limits.data_requests_per_user_per_minute)"
                    .into(),
            retry_after: wait,
        };
        if let Some(shared) = self.shared.as_ref().filter(|s| s.is_up())
            && let Some(answer) = shared.admit_user(user_id, self.rate).await
        {
            return answer.map_err(limited);
        }
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(4096)
        {
            self.per_user.retain_recent();
        }
        let now = self.per_user.clock().now();
        self.per_user
            .check_key(&user_id.to_owned())
            .map_err(|not_until| limited(not_until.wait_time_from(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_ip: u32, per_app: u32, failures: u32, in_flight: u32) -> LoginLimitSettings {
        LoginLimitSettings {
            per_ip_per_minute: per_ip,
            per_app_per_second: per_app,
            failures_per_ip_per_minute: failures,
            in_flight_per_ip: in_flight,
        }
    }

    #[tokio::test]
    async fn per_ip_and_per_app() {
        let l = LoginLimits::new(&settings(2, 1000, 10, 8));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(l.admit(a, "wx1").await.is_ok());
        assert!(l.admit(a, "wx1").await.is_ok());
        match l.admit(a, "wx1").await {
            Err(Error::RateLimited { retry_after, .. }) => {
                assert!(retry_after >= Duration::from_secs(1))
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        assert!(
            l.admit(b, "wx1").await.is_ok(),
            "other addresses are not affected"
        );
        let app = LoginLimits::new(&settings(1000, 1, 10, 8));
        assert!(app.admit(a, "wx1").await.is_ok());
        assert!(app.admit(b, "wx1").await.is_err());
        assert!(app.admit(b, "wx2").await.is_ok());
    }

    #[tokio::test]
    async fn failures_refuse_the_address_before_it_spends_the_app() {
        let l = LoginLimits::new(&settings(1000, 1000, 3, 8));
        let bad: IpAddr = [10, 0, 0, 9].into();
        for _ in 0..4 {
            drop(l.admit(bad, "wx1").await.map(|_| ()));
            l.record_failure(bad).await;
        }
        assert!(l.admit(bad, "wx1").await.is_err());
        assert!(l.admit([10, 0, 0, 8].into(), "wx1").await.is_ok());
    }

    #[tokio::test]
    async fn in_flight_slots_are_per_address_and_freed_on_drop() {
        let l = LoginLimits::new(&settings(1000, 1000, 10, 2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let s1 = l.admit(a, "wx1").await;
        let s2 = l.admit(a, "wx1").await;
        assert!(s1.is_ok() && s2.is_ok());
        assert!(l.admit(a, "wx1").await.is_err());
        assert!(l.admit([10, 0, 0, 2].into(), "wx1").await.is_ok());
        drop(s1);
        assert!(l.admit(a, "wx1").await.is_ok());
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        let one: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        let other: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(limit_key(one), limit_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap_or(IpAddr::from([0; 4]));
        assert_eq!(limit_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }
}
