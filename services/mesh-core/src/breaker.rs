//! A circuit breaker per called service.
//!
//! Hand-written: tower has no breaker, and the crates that offer one are either unmaintained
//! or built around their own service stack. The policy is the usual one:
//! - **closed**: calls flow; it opens after `consecutive_failures` failures in a row, or when at
//!   least `min_calls` of the last `window` calls saw a failure share of `failure_rate` or more;
//! - **open**: calls fail at once (UNAVAILABLE) for `open_for`;
//! - **half-open**: then up to `half_open_calls` probe calls go through; a success closes the
//!   breaker, a failure opens it again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The circuit breaker of one called service: when it opens (fails calls at once instead of
/// waiting on a service that is down) and how it tries the service again.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Failures in a row that open the breaker. Default: 5.
    pub consecutive_failures: u32,
    /// Share of failed calls in the window that opens it. Default: 0.5.
    pub failure_rate: f64,
    /// Calls remembered for the failure rate. Default: 20.
    pub window: usize,
    /// Calls needed in the window before the rate counts. Default: 10.
    pub min_calls: usize,
    /// How long it stays open before probing. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub open_for: Duration,
    /// Probe calls allowed at once while half-open. Default: 1.
    pub half_open_calls: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            min_calls: 10,
            open_for: Duration::from_secs(5),
            half_open_calls: 1,
        }
    }
}

/// The breaker's state, as shown in metrics and status pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    consecutive: u32,
    recent: VecDeque<bool>,
}

#[derive(Debug)]
pub struct Breaker {
    service: String,
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(service: &str, cfg: BreakerConfig) -> Self {
        Self {
            service: service.to_owned(),
            cfg,
            inner: Mutex::new(Inner { phase: Phase::Closed, consecutive: 0, recent: VecDeque::new() }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> BreakerState {
        match self.lock().phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until } if until > Instant::now() => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go out now. Every allowed call must be followed by [`Breaker::record`].
    pub fn allow(&self) -> bool {
        let mut inner = self.lock();
        match inner.phase {
            Phase::Closed => true,
            Phase::Open { until } if until > Instant::now() => false,
            Phase::Open { .. } => {
                inner.phase = Phase::HalfOpen { probes: 1 };
                drop(inner);
                self.transition(BreakerState::HalfOpen);
                true
            }
            Phase::HalfOpen { ref mut probes } if *probes < self.cfg.half_open_calls => {
                *probes += 1;
                true
            }
            Phase::HalfOpen { .. } => false,
        }
    }

    /// Records how an allowed call ended.
    pub fn record(&self, success: bool) {
        let mut inner = self.lock();
        match inner.phase {
            Phase::HalfOpen { .. } => {
                inner.consecutive = 0;
                inner.recent.clear();
                let to = if success { BreakerState::Closed } else { BreakerState::Open };
                inner.phase = if success {
                    Phase::Closed
                } else {
                    Phase::Open { until: Instant::now() + self.cfg.open_for }
                };
                drop(inner);
                self.transition(to);
            }
            Phase::Open { .. } => {}
            Phase::Closed => {
                inner.consecutive = if success { 0 } else { inner.consecutive + 1 };
                inner.recent.push_back(!success);
                while inner.recent.len() > self.cfg.window.max(1) {
                    inner.recent.pop_front();
                }
                let failures = inner.recent.iter().filter(|f| **f).count();
                let rate_trips = inner.recent.len() >= self.cfg.min_calls
                    && failures as f64 >= self.cfg.failure_rate * inner.recent.len() as f64;
                if inner.consecutive >= self.cfg.consecutive_failures || rate_trips {
                    inner.phase = Phase::Open { until: Instant::now() + self.cfg.open_for };
                    inner.consecutive = 0;
                    inner.recent.clear();
                    drop(inner);
                    self.transition(BreakerState::Open);
                }
            }
        }
    }

    fn transition(&self, to: BreakerState) {
        if to == BreakerState::Closed {
            tracing::info!(service = %self.service, "circuit breaker closed");
        } else {
            tracing::warn!(service = %self.service, state = to.as_str(), "circuit breaker {}", to.as_str());
        }
        metrics::counter!("grpc_client_breaker_transitions_total", "service" => self.service.clone(), "to" => to.as_str())
            .increment(1);
        metrics::gauge!("grpc_client_breaker_open", "service" => self.service.clone())
            .set(if to == BreakerState::Open { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> Breaker {
        Breaker::new("t", BreakerConfig { consecutive_failures: 3, open_for, ..BreakerConfig::default() })
    }

    #[test]
    fn consecutive_failures_open_it_and_it_fails_fast_while_open() {
        let b = breaker(Duration::from_secs(60));
        for _ in 0..2 {
            assert!(b.allow());
            b.record(false);
        }
        assert!(b.allow());
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed, "a success breaks the run");
        for _ in 0..3 {
            assert!(b.allow());
            b.record(false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
    }

    #[test]
    fn a_high_failure_rate_opens_it_without_a_long_run() {
        let b = Breaker::new("t", BreakerConfig { consecutive_failures: 100, ..BreakerConfig::default() });
        for i in 0..10 {
            assert!(b.allow());
            b.record(i % 2 == 0);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn after_open_for_one_probe_decides() {
        let b = breaker(Duration::from_millis(20));
        for _ in 0..3 {
            b.allow();
            b.record(false);
        }
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow(), "the probe goes through");
        assert!(!b.allow(), "only one probe at a time");
        b.record(false);
        assert_eq!(b.state(), BreakerState::Open, "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.allow());
        b.record(true);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allow());
    }
}
