//! A faithful offline simulator of WeChat's mini-program server API, plus the
//! phone side (`wx.login`, the phone-number button, encrypted payloads), with
//! fault injection and call statistics.
//!
//! It serves WeChat's paths at its root, so a backend only changes its base
//! URL. Answers follow WeChat, quirks included: errors as HTTP 200 with an
//! `errcode`, `text/plain` JSON from `jscode2session`, single-use codes tied to
//! their appid and valid for 5 minutes, stable_token semantics. See
//! `shared/DESIGN.md` ("The simulator") for the full contract.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use wechat_sim::{SimConfig, Simulator};
//! let sim = Simulator::new(SimConfig {
//!     apps: [("wx1111111111111111".into(), "11111111111111111111111111111111".into())].into(),
//!     ..SimConfig::default()
//! });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! tokio::spawn(sim.serve(listener));
//! # Ok(()) }
//! ```

mod api;
mod faults;
mod ids;
mod phone;
mod push;
mod state;
mod wechat;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use wechat_miniapp::{Clock, OffsetClock};

pub use api::{Api, WxError};
pub use faults::{FaultHit, FaultSpec, FaultSpecError, Stats};
pub use push::{MediaCheckRecord, PushFormat, PushMode, PushRecord, PushTarget, to_xml};
pub use state::{
    CODE_TTL_MS, ContentRules, MAX_CHECKED_CHARS, REVIEW_IMAGE_MARK, RISKY_IMAGE_MARK, RISKY_LABEL,
    SimConfig, SimError, SimState, TOKEN_OVERLAP_MS, TOKEN_TTL_MS, VISIT_WINDOW_MS,
};

struct Shared {
    state: Mutex<SimState>,
    faults: Mutex<faults::Faults>,
    stats: Mutex<Stats>,
    pushes: Mutex<push::Pushes>,
    clock: OffsetClock,
}

/// A running simulator's state. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a
    // way worse than refusing every later call would be.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Simulator {
    /// A simulator with these apps and options, on the machine's clock.
    pub fn new(config: SimConfig) -> Self {
        Self::with_clock(config, OffsetClock::new())
    }

    /// A simulator on a clock that tests can move forward (code expiry,
    /// token expiry). Share the clock with a client to move both at once.
    pub fn with_clock(config: SimConfig, clock: OffsetClock) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(SimState::new(config)),
                faults: Mutex::default(),
                stats: Mutex::default(),
                pushes: Mutex::default(),
                clock,
            }),
        }
    }

    /// The simulator's clock.
    pub fn clock(&self) -> &OffsetClock {
        &self.shared.clock
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        lock(&self.shared.state)
    }

    /// Installs a fault (as `POST /sim/v1/faults` does).
    pub fn set_fault(&self, spec: FaultSpec) -> Result<(), FaultSpecError> {
        lock(&self.shared.faults).set(spec)
    }

    /// Installs a fault on `api`: answer `errcode` and/or wait `delay_ms`,
    /// for `count` calls (every call until cleared when `None`). The short
    /// form of [`Simulator::set_fault`] that tests of any backend use.
    pub fn fault(
        &self,
        api: &str,
        errcode: Option<i64>,
        delay_ms: Option<u64>,
        count: Option<u64>,
    ) -> Result<(), FaultSpecError> {
        self.set_fault(FaultSpec {
            api: api.into(),
            errcode,
            delay_ms,
            rate: None,
            count,
        })
    }

    /// Clears every fault.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Calls and errcodes so far.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Forgets the counted calls.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    /// `wx.login()` for `user` of `appid`: a fresh code (and session_key).
    pub fn login_code(&self, appid: &str, user: &str) -> Result<String, SimError> {
        let now = self.now();
        self.state().issue_login_code(appid, user, now)
    }

    /// `wx.login()` for the user whose openid in `appid` is `openid` (a
    /// user migrated from another backend keeps their openid): a fresh
    /// code. A new such user gets `unionid`, or none.
    pub fn login_code_for_openid(
        &self,
        appid: &str,
        openid: &str,
        unionid: Option<&str>,
    ) -> Result<String, SimError> {
        let now = self.now();
        let mut state = self.state();
        let user = state.user_with_openid(appid, openid, unionid)?;
        state.issue_login_code(appid, &user, now)
    }

    /// The user's openid, unionid and current session_key.
    pub fn user_info(&self, appid: &str, user: &str) -> Result<serde_json::Value, SimError> {
        self.state().user_info(appid, user)
    }

    /// What `wx.getUserInfo` gives `user`: `data` plus a watermark, encrypted
    /// with the user's current session_key.
    pub fn encrypt(
        &self,
        appid: &str,
        user: &str,
        data: serde_json::Value,
    ) -> Result<serde_json::Value, SimError> {
        let now = self.now();
        self.state().encrypt_for(appid, user, data, now)
    }

    /// A phone-button code for `user`'s number (`phone` as in
    /// `/sim/v1/phone-code`).
    pub fn phone_code(
        &self,
        appid: &str,
        user: &str,
        phone: Option<&str>,
    ) -> Result<String, SimError> {
        let now = self.now();
        self.state().issue_phone_code(appid, user, phone, now)
    }

    /// Replaces the content checks' word lists (as `POST /sim/v1/content-rules`).
    pub fn set_content_rules(&self, rules: ContentRules) -> Result<(), SimError> {
        self.state().set_content_rules(rules)
    }

    /// The content checks' word lists.
    pub fn content_rules(&self) -> ContentRules {
        self.state().content_rules().clone()
    }

    /// The router: WeChat's paths at the root, the phone side under `/sim/v1`.
    pub fn router(&self) -> Router {
        wechat::routes()
            .merge(phone::routes())
            .with_state(self.clone())
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}
