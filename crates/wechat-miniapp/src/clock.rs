//! Wall-clock time behind a trait, so token expiry (and, in the simulator, code
//! expiry) can be tested by moving time instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. Wall-clock rather than monotonic because
/// expiry times are shared with other processes (a Redis or SQL token cache).
pub trait Clock: Send + Sync + 'static {
    /// The current time in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
}

fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The machine's clock plus an offset that tests can move. Clones
/// share the offset, so one handle can steer a client and a simulator at once.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset_ms: Arc<AtomicI64>,
}

impl OffsetClock {
    /// A clock that starts at the machine's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock (and every clone of it) forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Moves this clock (and every clone of it) back: an instance whose
    /// clock lags, in tests.
    pub fn rewind(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_sub(ms, Ordering::SeqCst);
    }

    /// How far this clock is ahead of the machine's, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> i64 {
        system_now_ms().saturating_add(self.offset_ms())
    }
}
