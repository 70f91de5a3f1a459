//! Which instances are eligible: the active probe's verdict, passive ejection on the instance's
//! own failures, and the ejection floor.
//!
//! An instance is eligible when its last `/readyz` probe passed and it is not ejected. Ejection is
//! passive: a connect error, reset or timeout ejects at once, and a run of 5xx answers too; each
//! ejection in a row doubles its length up to a maximum, and only a passing probe after it ends
//! lets the instance back in. Passive ejection never holds out more than
//! `health.max_ejection_percent` of a pool and always leaves one instance in: a burst of failures
//! that is not the instances' own (a client's, a service's) can never empty a pool, while the
//! active probe still takes out an instance that is really down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_core::fault::{Fault, Side};
use serde::Serialize;

use super::Pool;
use crate::config::HealthConfig;

/// One gateway instance.
#[derive(Debug)]
pub struct Instance {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once for every request's target.
    authority: http::uri::Authority,
    /// The configured name it was resolved from.
    pub source: String,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    failures: AtomicU64,
    /// Answers (requests less failures) counted when the previous probe started.
    answered_at_probe: AtomicU64,
    consecutive_5xx: AtomicU32,
    /// Exponentially weighted latency in microseconds.
    ewma_micros: AtomicU64,
    /// The latest answer latencies (microseconds), for the p99 on the status page.
    recent: Mutex<std::collections::VecDeque<u64>>,
    state: Mutex<Eligibility>,
}

#[derive(Debug)]
struct Eligibility {
    /// The last active probe passed.
    ready: bool,
    ejected_until: Option<Instant>,
    /// Length of the next ejection.
    next_ejection: Duration,
    ejections: u64,
}

/// How one attempt on an instance ended, for passive health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered, with the gateway's own status (5xx counts towards ejection).
    Answered { status: u16, latency: Duration },
    /// Answered with a failure of a service behind the gateway (`x-mesh-fault: service`): the
    /// gateway is alive and well, so it neither counts towards nor breaks a run of 5xx.
    Relayed { latency: Duration },
    /// Could not connect, was reset, or did not answer in time.
    Failed,
    /// The attempt ended because of the client (its body stalled, broke or was too large), or
    /// the instance answered 5xx before the client had finished sending: not the instance's
    /// doing, so neither a failure nor a success.
    ClientCaused,
}

impl Outcome {
    /// The outcome of an attempt as the failure model sees it: `fault` (none: a success),
    /// the status when the instance answered, and how long it took.
    pub fn of(fault: Option<Fault>, status: Option<u16>, latency: Duration) -> Self {
        match (fault, status) {
            (None, status) => Self::Answered { status: status.unwrap_or(200), latency },
            (Some(f), _) if f.side == Side::Client => Self::ClientCaused,
            (Some(f), _) if !f.counts_against_upstream() => Self::Relayed { latency },
            (Some(_), Some(status)) => Self::Answered { status, latency },
            (Some(_), None) => Self::Failed,
        }
    }
}

/// What an outcome asks of the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    Keep,
    Eject(&'static str),
}

/// What `/mesh/status` shows of an instance.
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub addr: String,
    pub source: String,
    pub healthy: bool,
    pub ready: bool,
    pub ejected_for_ms: u64,
    pub ejections: u64,
    pub in_flight: usize,
    pub requests: u64,
    pub failures: u64,
    pub error_rate: f64,
    pub ewma_latency_ms: f64,
    /// Over the latest answers (at most 512).
    pub p99_latency_ms: f64,
}

/// How many latest answer latencies an instance keeps for its p99.
const RECENT: usize = 512;

// === impl Instance ===

impl Instance {
    pub fn new(addr: SocketAddr, source: String, health: &HealthConfig) -> Self {
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string().as_str())
                .expect("a socket address is a valid authority"),
            source,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            answered_at_probe: AtomicU64::new(0),
            consecutive_5xx: AtomicU32::new(0),
            ewma_micros: AtomicU64::new(0),
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
            // Optimistic until the first probe: a fresh router serves at once, and a wrong
            // guess costs one failed attempt that is retried elsewhere.
            state: Mutex::new(Eligibility {
                ready: true,
                ejected_until: None,
                next_ejection: health.eject_base,
                ejections: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Eligibility> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The absolute URI of `target` (its path and query) on this instance.
    pub fn uri_for(&self, target: &http::Uri) -> Option<http::Uri> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            target.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        http::Uri::from_parts(parts).ok()
    }

    pub fn is_eligible(&self) -> bool {
        let state = self.state();
        state.ready && state.ejected_until.is_none_or(|t| t <= Instant::now())
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as in flight until the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Records how an attempt ended; says whether it calls for an ejection (failure or a run
    /// of 5xx), which the pool then decides ([`Pool::record`]).
    fn record(&self, outcome: Outcome, health: &HealthConfig) -> Verdict {
        if outcome == Outcome::ClientCaused {
            return Verdict::Keep;
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Relayed { latency } => self.observe_latency(latency),
            Outcome::Answered { status, latency } => {
                self.observe_latency(latency);
                if status >= 500 {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    if self.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1 >= health.consecutive_5xx {
                        self.consecutive_5xx.store(0, Ordering::Relaxed);
                        return Verdict::Eject("consecutive 5xx answers");
                    }
                } else {
                    self.consecutive_5xx.store(0, Ordering::Relaxed);
                }
            }
            Outcome::Failed => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                return Verdict::Eject("connection failed or timed out");
            }
            Outcome::ClientCaused => {}
        }
        Verdict::Keep
    }

    /// Whether a passive ejection holds this instance out now.
    fn is_ejected(&self, now: Instant) -> bool {
        self.state().ejected_until.is_some_and(|t| t > now)
    }

    fn observe_latency(&self, latency: Duration) {
        let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let old = self.ewma_micros.load(Ordering::Relaxed);
        let new = if old == 0 { micros } else { (old * 7 + micros) / 8 };
        self.ewma_micros.store(new, Ordering::Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(micros);
    }

    fn eject(&self, pool: &str, health: &HealthConfig, reason: &'static str) {
        let mut state = self.state();
        let now = Instant::now();
        if state.ejected_until.is_some_and(|t| t > now) {
            return;
        }
        let length = state.next_ejection;
        state.ejected_until = Some(now + length);
        state.next_ejection = (length * 2).min(health.eject_max);
        state.ejections += 1;
        drop(state);
        tracing::warn!(pool, instance = %self.addr, ?length, reason, "instance ejected");
        metrics::counter!("router_ejections_total", "pool" => pool.to_owned()).increment(1);
    }

    /// Whether the instance answered a request (not a failure) since the previous call: called
    /// as each probe starts, so a probe that times out can tell a busy instance from a dead one.
    pub fn answered_since_last_probe(&self) -> bool {
        let answered =
            self.requests.load(Ordering::Relaxed).saturating_sub(self.failures.load(Ordering::Relaxed));
        answered > self.answered_at_probe.swap(answered, Ordering::Relaxed)
    }

    /// Applies an active probe result. A pass after an ejection ended re-admits the instance
    /// and, once it stays healthy, resets the ejection length.
    pub fn probed(&self, ready: bool, pool: &str, health: &HealthConfig) {
        let mut state = self.state();
        let now = Instant::now();
        let was = state.ready && state.ejected_until.is_none_or(|t| t <= now);
        state.ready = ready;
        if ready && state.ejected_until.is_some_and(|t| t <= now) {
            state.ejected_until = None;
        } else if ready && state.ejected_until.is_none() {
            state.next_ejection = health.eject_base;
        }
        let is = state.ready && state.ejected_until.is_none_or(|t| t <= now);
        drop(state);
        if was != is {
            if is {
                tracing::info!(pool, instance = %self.addr, "instance admitted");
            } else {
                tracing::warn!(pool, instance = %self.addr, "instance failed its readiness probe");
            }
        }
    }

    pub fn status(&self) -> InstanceStatus {
        let state = self.state();
        let now = Instant::now();
        let requests = self.requests.load(Ordering::Relaxed);
        let failures = self.failures.load(Ordering::Relaxed);
        InstanceStatus {
            addr: self.addr.to_string(),
            source: self.source.clone(),
            healthy: state.ready && state.ejected_until.is_none_or(|t| t <= now),
            ready: state.ready,
            ejected_for_ms: state
                .ejected_until
                .map_or(0, |t| t.saturating_duration_since(now).as_millis() as u64),
            ejections: state.ejections,
            in_flight: self.in_flight(),
            requests,
            failures,
            error_rate: if requests == 0 { 0.0 } else { failures as f64 / requests as f64 },
            ewma_latency_ms: self.ewma_micros.load(Ordering::Relaxed) as f64 / 1000.0,
            p99_latency_ms: self.p99_micros() as f64 / 1000.0,
        }
    }

    /// Exponentially weighted latency in microseconds, for the balancer.
    pub(super) fn ewma_micros(&self) -> u64 {
        self.ewma_micros.load(Ordering::Relaxed)
    }

    fn p99_micros(&self) -> u64 {
        let mut latencies: Vec<u64> =
            self.recent.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        if latencies.is_empty() {
            return 0;
        }
        latencies.sort_unstable();
        latencies[((latencies.len() - 1) as f64 * 0.99).round() as usize]
    }
}

/// An in-flight request on an instance.
#[derive(Debug)]
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

// === impl Pool ===

impl Pool {
    /// Records how an attempt on `instance` ended, and ejects it when that is called for and
    /// the ejection floor allows.
    pub fn record(&self, instance: &Instance, outcome: Outcome) {
        let Verdict::Eject(reason) = instance.record(outcome, &self.health) else { return };
        let _deciding = self.ejecting.lock().unwrap_or_else(|p| p.into_inner());
        let instances = self.instances();
        let now = Instant::now();
        let ejected = instances.iter().filter(|i| i.is_ejected(now)).count();
        let others_in = instances.iter().filter(|i| i.addr != instance.addr && i.is_eligible()).count();
        let allowed = (ejected + 1) * 100 <= instances.len() * self.health.max_ejection_percent as usize;
        if instance.is_ejected(now) {
            return;
        }
        if !allowed || others_in == 0 {
            // Debug, not warn: while an instance is down and its probe has not yet noticed, every
            // request would log it; the metric counts them.
            tracing::debug!(pool = %self.name, instance = %instance.addr, reason, ejected, "not ejecting: the pool is at its ejection floor");
            metrics::counter!("router_ejections_refused_total", "pool" => self.name.clone()).increment(1);
            return;
        }
        instance.eject(&self.name, &self.health, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;
    use crate::pool::tests::{pool, pool_with};
    use crate::pool::{Outcome, Pool};

    #[tokio::test]
    async fn a_failure_ejects_and_only_a_probe_after_the_ejection_readmits() {
        let mut cfg = Config::default();
        cfg.health.eject_base = Duration::from_millis(50);
        let pool = pool_with(2, &cfg);
        let instance = pool.instances()[0].clone();
        let only = |pool: &Pool| (0..20).all(|_| pool.pick(&[]).is_some_and(|i| i.addr != instance.addr));
        pool.record(&instance, Outcome::Failed);
        assert!(only(&pool), "ejected");
        instance.probed(true, "p", &cfg.health);
        assert!(only(&pool), "still within the ejection");
        tokio::time::sleep(Duration::from_millis(60)).await;
        instance.probed(false, "p", &cfg.health);
        assert!(only(&pool), "failing its probe keeps it out");
        instance.probed(true, "p", &cfg.health);
        assert!(instance.is_eligible(), "re-admitted");
        // The next ejection is longer.
        pool.record(&instance, Outcome::Failed);
        assert!(instance.status().ejected_for_ms > 50);
    }

    #[tokio::test]
    async fn a_run_of_5xx_ejects() {
        let cfg = Config::default();
        let pool = pool(2);
        let instance = pool.instances()[0].clone();
        let answered = |status| Outcome::Answered { status, latency: Duration::from_millis(1) };
        for _ in 0..cfg.health.consecutive_5xx - 1 {
            pool.record(&instance, answered(503));
        }
        pool.record(&instance, answered(200));
        assert!(instance.is_eligible(), "a success breaks the run");
        for _ in 0..cfg.health.consecutive_5xx {
            pool.record(&instance, answered(503));
        }
        assert!(!instance.is_eligible());
    }

    #[tokio::test]
    async fn a_probe_can_tell_whether_the_instance_answered_since_the_last_one() {
        let pool = pool(1);
        let instance = pool.instances()[0].clone();
        assert!(!instance.answered_since_last_probe(), "nothing answered yet");
        pool.record(&instance, Outcome::Answered { status: 200, latency: Duration::from_millis(1) });
        assert!(instance.answered_since_last_probe());
        assert!(!instance.answered_since_last_probe(), "counted once");
        pool.record(&instance, Outcome::Failed);
        assert!(!instance.answered_since_last_probe(), "a failure is not an answer");
    }

    #[tokio::test]
    async fn relayed_service_failures_and_client_caused_endings_never_eject_the_gateway() {
        let cfg = Config::default();
        let pool = pool(2);
        let instance = pool.instances()[0].clone();
        for _ in 0..cfg.health.consecutive_5xx * 3 {
            pool.record(&instance, Outcome::Relayed { latency: Duration::from_millis(1) });
            pool.record(&instance, Outcome::ClientCaused);
        }
        assert!(instance.is_eligible());
        assert_eq!(instance.status().failures, 0, "a service's or a client's failure is not the gateway's");
    }

    #[tokio::test]
    async fn passive_ejection_keeps_a_floor() {
        // Default 50%: of four instances at most two are held out; of one, none.
        let pool = pool(4);
        for instance in pool.instances().iter() {
            pool.record(instance, Outcome::Failed);
        }
        let eligible = pool.instances().iter().filter(|i| i.is_eligible()).count();
        assert_eq!(eligible, 2, "half the pool stays in");

        let single = pool_with(1, &Config::default());
        let only = single.instances()[0].clone();
        single.record(&only, Outcome::Failed);
        assert!(only.is_eligible(), "a pool always keeps one instance in");
        // The active probe still takes a really dead instance out.
        only.probed(false, "p", &single.health);
        assert!(single.pick(&[]).is_none());

        let mut all = Config::default();
        all.health.max_ejection_percent = 100;
        let pool = pool_with(3, &all);
        for instance in pool.instances().iter() {
            pool.record(instance, Outcome::Failed);
        }
        assert_eq!(pool.instances().iter().filter(|i| i.is_eligible()).count(), 1, "even at 100%, one stays");
    }
}
