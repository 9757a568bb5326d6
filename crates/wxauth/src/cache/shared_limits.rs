//! Rate-limit counters shared by every instance: GCRA (the algorithm
//! `governor` runs in process) as Lua scripts, so each check is one atomic
//! round trip and N instances allow N× nothing. Times come from Redis's
//! own clock (`TIME`), so instances' clocks need not agree.

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use super::redis::{PREFIX, SharedRedis};

/// GCRA on Redis's clock (µs) over the key in `tat_key`: sets `wait` to
/// the µs until one more is allowed (0: allowed, and counted).
const GCRA_STEP: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', tat_key)) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
local wait = 0
if now < allow_at then
  wait = allow_at - now
else
  redis.call('SET', tat_key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
";

/// GCRA over KEYS[1]; ARGV: emission interval (µs), burst. Returns 0 when
/// allowed (and counted), else the µs until it would be.
fn gcra_script() -> String {
    format!("local tat_key = KEYS[1]\n{GCRA_STEP}\nreturn wait")
}

/// An address's login check: its penalty (KEYS[2], set after too many
/// refused codes) first, then its own GCRA (KEYS[1]). Returns 0 when
/// allowed, µs to wait for the rate, or minus the µs of a penalty.
fn address_script() -> String {
    format!(
        "local penalty = redis.call('PTTL', KEYS[2])\n\
         if penalty > 0 then return -penalty * 1000 end\n\
         local tat_key = KEYS[1]\n{GCRA_STEP}\nreturn wait"
    )
}

/// Counts a refused code (GCRA over KEYS[1]); past the budget, sets the
/// address's penalty (KEYS[2]) until the budget refills by one. Returns
/// the penalty in µs, or 0.
fn failure_script() -> String {
    format!(
        "local tat_key = KEYS[1]\n{GCRA_STEP}\n\
         if wait > 0 then redis.call('SET', KEYS[2], 1, 'PX', math.ceil(wait / 1000) + 1) end\n\
         return wait"
    )
}

/// A rate: `burst` at once, refilling one per `interval`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    /// Time to earn one more.
    pub interval: Duration,
    /// How many at once.
    pub burst: u32,
}

impl Rate {
    /// `n` per `period`, all of them available at once.
    pub fn per(n: u32, period: Duration) -> Self {
        let n = n.max(1);
        Self {
            interval: period / n,
            burst: n,
        }
    }

    fn args(self) -> [i64; 2] {
        [
            i64::try_from(self.interval.as_micros())
                .unwrap_or(i64::MAX)
                .max(1),
            i64::from(self.burst),
        ]
    }
}

/// Why an address must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its login rate.
    Rate(Duration),
    /// Its penalty for refused codes.
    Penalty(Duration),
}

/// Login counters in Redis.
#[derive(Clone)]
pub struct SharedLimits {
    redis: Arc<SharedRedis>,
    gcra: Arc<Script>,
    address: Arc<Script>,
    failure: Arc<Script>,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits").finish_non_exhaustive()
    }
}

fn micros(n: i64) -> Duration {
    Duration::from_micros(n.unsigned_abs())
}

impl SharedLimits {
    /// Counters on `redis`.
    pub fn new(redis: Arc<SharedRedis>) -> Self {
        Self {
            redis,
            gcra: Arc::new(Script::new(&gcra_script())),
            address: Arc::new(Script::new(&address_script())),
            failure: Arc::new(Script::new(&failure_script())),
        }
    }

    /// Whether Redis answers now (else the caller counts in process).
    pub fn is_up(&self) -> bool {
        self.redis.is_up()
    }

    /// Checks and counts one login from `address`. `None`: Redis failed.
    pub async fn admit_address(&self, address: &str, rate: Rate) -> Option<Result<(), Wait>> {
        let rate_key = format!("{PREFIX}rl:ip:{address}");
        let penalty_key = format!("{PREFIX}rl:penalty:{address}");
        let answer: i64 = self
            .redis
            .script(&self.address, &[&rate_key, &penalty_key], &rate.args())
            .await?;
        Some(match answer {
            0 => Ok(()),
            n if n < 0 => Err(Wait::Penalty(micros(n))),
            n => Err(Wait::Rate(micros(n))),
        })
    }

    /// Checks and counts one login for `appid`. `None`: Redis failed.
    pub async fn admit_app(&self, appid: &str, rate: Rate) -> Option<Result<(), Duration>> {
        self.admit(&format!("{PREFIX}rl:app:{appid}"), rate).await
    }

    /// One GCRA step over `key`: allowed (and counted), or the wait.
    /// `None`: Redis failed.
    async fn admit(&self, key: &str, rate: Rate) -> Option<Result<(), Duration>> {
        let answer: i64 = self.redis.script(&self.gcra, &[key], &rate.args()).await?;
        Some(if answer == 0 {
            Ok(())
        } else {
            Err(micros(answer))
        })
    }

    /// The penalty `address` is under, if any. `None`: Redis failed.
    pub async fn penalty(&self, address: &str) -> Option<Option<Duration>> {
        let penalty_key = format!("{PREFIX}rl:penalty:{address}");
        let left: i64 = self.redis.run(redis::cmd("PTTL").arg(&penalty_key)).await?;
        Some((left > 0).then(|| Duration::from_millis(left.unsigned_abs())))
    }

    /// Checks and counts one data request of `user_id`. `None`: Redis
    /// failed.
    pub async fn admit_user(&self, user_id: &str, rate: Rate) -> Option<Result<(), Duration>> {
        self.admit(&format!("{PREFIX}rl:user:{user_id}"), rate)
            .await
    }

    /// Counts a code WeChat refused for `address` (and starts its penalty
    /// past the budget). `false`: Redis failed.
    pub async fn record_failure(&self, address: &str, rate: Rate) -> bool {
        let key = format!("{PREFIX}rl:fail:{address}");
        let penalty_key = format!("{PREFIX}rl:penalty:{address}");
        let answer: Option<i64> = self
            .redis
            .script(&self.failure, &[&key, &penalty_key], &rate.args())
            .await;
        answer.is_some()
    }
}
