//! Fault injection and call statistics.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::api::Api;

/// A fault as posted to `/sim/v1/faults`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// Which API: `jscode2session`, `token`, `stable_token`, `checksession`,
    /// `resetusersessionkey` or `getuserphonenumber`.
    pub api: String,
    /// Answer this errcode instead of the real answer.
    pub errcode: Option<i64>,
    /// Wait this long before answering.
    pub delay_ms: Option<u64>,
    /// Probability that a call is affected (0 < rate ≤ 1); default 1.
    pub rate: Option<f64>,
    /// Affect this many calls, then clear; default: until cleared.
    pub count: Option<u64>,
}

/// What a fault does to one call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultHit {
    /// Wait before answering.
    pub delay: Option<Duration>,
    /// Answer this errcode.
    pub errcode: Option<i64>,
}

#[derive(Debug, Clone)]
struct Fault {
    errcode: Option<i64>,
    delay_ms: Option<u64>,
    rate: f64,
    remaining: Option<u64>,
}

/// Why a fault spec was refused.
#[derive(Debug, thiserror::Error)]
pub enum FaultSpecError {
    /// Not one of the simulated APIs.
    #[error(
        "unknown api {0:?}; expected one of jscode2session, token, stable_token, checksession, resetusersessionkey, getuserphonenumber"
    )]
    UnknownApi(String),
    /// Neither `errcode` nor `delay_ms`.
    #[error("a fault needs errcode, delay_ms or both")]
    Empty,
    /// `rate` outside (0, 1].
    #[error("rate must be greater than 0 and at most 1")]
    BadRate,
    /// `count` of 0.
    #[error("count must be at least 1")]
    BadCount,
    /// `errcode` of 0.
    #[error("errcode 0 is success; leave it out to inject only a delay")]
    ZeroErrcode,
}

/// The faults in force, one per API (a new one replaces the old).
#[derive(Debug, Default)]
pub struct Faults {
    by_api: HashMap<Api, Fault>,
}

impl Faults {
    /// Installs a fault.
    pub fn set(&mut self, spec: FaultSpec) -> Result<(), FaultSpecError> {
        let api = Api::from_name(&spec.api)
            .ok_or_else(|| FaultSpecError::UnknownApi(spec.api.clone()))?;
        if spec.errcode.is_none() && spec.delay_ms.is_none() {
            return Err(FaultSpecError::Empty);
        }
        if spec.errcode == Some(0) {
            return Err(FaultSpecError::ZeroErrcode);
        }
        let rate = spec.rate.unwrap_or(1.0);
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(FaultSpecError::BadRate);
        }
        if spec.count == Some(0) {
            return Err(FaultSpecError::BadCount);
        }
        self.by_api.insert(
            api,
            Fault {
                errcode: spec.errcode,
                delay_ms: spec.delay_ms,
                rate,
                remaining: spec.count,
            },
        );
        Ok(())
    }

    /// Clears every fault.
    pub fn clear(&mut self) {
        self.by_api.clear();
    }

    /// Decides whether this call of `api` is affected, and consumes one use.
    pub fn roll(&mut self, api: Api) -> FaultHit {
        let Some(fault) = self.by_api.get_mut(&api) else {
            return FaultHit::default();
        };
        if fault.rate < 1.0 && !rand::rng().random_bool(fault.rate) {
            return FaultHit::default();
        }
        let hit = FaultHit {
            delay: fault.delay_ms.map(Duration::from_millis),
            errcode: fault.errcode,
        };
        if let Some(remaining) = fault.remaining.as_mut() {
            *remaining -= 1;
            if *remaining == 0 {
                self.by_api.remove(&api);
            }
        }
        hit
    }
}

/// Calls per API and errcodes answered per API (0 counts successes).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Calls received, by API name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Answers given, by API name and then errcode.
    pub errcodes: BTreeMap<&'static str, BTreeMap<String, u64>>,
}

impl Stats {
    /// Counts a call.
    pub fn call(&mut self, api: Api) {
        *self.calls.entry(api.name()).or_default() += 1;
    }

    /// Counts an answer.
    pub fn answered(&mut self, api: Api, errcode: i64) {
        *self
            .errcodes
            .entry(api.name())
            .or_default()
            .entry(errcode.to_string())
            .or_default() += 1;
    }
}
