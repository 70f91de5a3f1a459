//! `meshctl chaos run FILE`: a scenario (a TOML list of timed actions and what the mesh is
//! expected to do) played against a running `meshctl up --processes` under load from the
//! bench's load generator, judged in a verdict table (docs/chaos.md).
//!
//! The load is two open loops at once, one on the identity routes and one on the business
//! routes (so losing a whole domain shows as that domain's failures), every request counted in
//! its quarter-second of the run. The router's status is polled meanwhile; from it come the
//! times to eject and to re-admit each target.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method};
use serde::{Deserialize, Serialize};

use super::{Action, observe};
use crate::bench::load::{self, Load, Mix, Pacing, RequestSpec, Slice, Timeline};
use crate::bench::mesh::{Api, next_setup_source};
use crate::state::MeshState;

/// How often the router's status is read while a scenario runs: the resolution of the times
/// to eject and re-admit.
pub(crate) const POLL: Duration = Duration::from_millis(100);
/// The slices of the load's timeline.
const SLICE: Duration = Duration::from_millis(250);

/// A scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Scenario {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) description: String,
    #[serde(default)]
    pub(crate) load: LoadSpec,
    #[serde(default)]
    pub(crate) expect: Expect,
    #[serde(rename = "action")]
    pub(crate) actions: Vec<Step>,
}

/// One timed action.
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Step {
    /// Since the load started.
    #[serde(with = "humantime_serde")]
    pub(crate) at: Duration,
    #[serde(flatten)]
    pub(crate) action: Action,
}

/// The load the scenario runs under.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LoadSpec {
    /// How long the load runs. Default: 12s.
    #[serde(with = "humantime_serde")]
    pub(crate) duration: Duration,
    /// Connections in all, half on each domain. Default: 8.
    pub(crate) connections: usize,
    /// Requests per second in all, half on each domain, on a fixed schedule. Default: 60
    /// (a 12 s run stays well inside the free plan's 1000 requests an hour of its fresh user).
    pub(crate) rate: f64,
}

impl Default for LoadSpec {
    fn default() -> Self {
        Self { duration: Duration::from_secs(12), connections: 8, rate: 60.0 }
    }
}

/// What the mesh must do; every expectation left out is not judged.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Expect {
    /// Failed requests (anything but 2xx) allowed over the whole run.
    pub(crate) max_failed: Option<u64>,
    /// … over the identity routes only.
    pub(crate) identity_max_failed: Option<u64>,
    /// … over the business routes only.
    pub(crate) business_max_failed: Option<u64>,
    /// … after the last action (the mesh recovered).
    pub(crate) after_max_failed: Option<u64>,
    /// Instances the mesh must be seen to take out (a gateway ejected from its pool; a service
    /// short of a replica or behind an open breaker in some gateway's view).
    pub(crate) ejected: Vec<String>,
    /// Instances that must be seen back in by the end.
    pub(crate) readmitted: Vec<String>,
    /// Services whose breaker must be seen open in some gateway.
    pub(crate) breaker_opens: Vec<String>,
}

/// Figures of one phase of the run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Phase {
    pub(crate) phase: &'static str,
    pub(crate) from_s: f64,
    pub(crate) to_s: f64,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) identity_failed: u64,
    pub(crate) business_failed: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

/// How one target fared.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct TargetTimes {
    pub(crate) target: String,
    /// From the first action on it until the mesh showed it out.
    pub(crate) eject_ms: Option<u64>,
    /// From the action that healed it (restart, clear, the end of a pause or fault) until the
    /// mesh showed it back.
    pub(crate) readmit_ms: Option<u64>,
}

/// A judged expectation.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Judgement {
    pub(crate) expectation: String,
    pub(crate) seen: String,
    pub(crate) met: bool,
}

/// Everything `chaos run` found, as `--json` writes it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Verdict {
    pub(crate) scenario: String,
    pub(crate) load: LoadSpec,
    pub(crate) phases: Vec<Phase>,
    pub(crate) error_kinds: BTreeMap<String, u64>,
    pub(crate) targets: Vec<TargetTimes>,
    /// Per service of `breaker_opens`: ms from the first action until it was seen open.
    pub(crate) breakers: BTreeMap<String, Option<u64>>,
    pub(crate) actions: Vec<String>,
    pub(crate) judgements: Vec<Judgement>,
    pub(crate) passed: bool,
}

// === impl Scenario ===

impl Scenario {
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        let mut scenario: Scenario = toml::from_str(text)?;
        scenario.actions.sort_by_key(|s| s.at);
        anyhow::ensure!(!scenario.actions.is_empty(), "a scenario needs at least one [[action]]");
        let duration = scenario.load.duration;
        anyhow::ensure!(duration <= load::MAX_DURATION, "load.duration is at most {:?}", load::MAX_DURATION);
        anyhow::ensure!(
            (2..=64).contains(&scenario.load.connections),
            "load.connections must be 2..=64 (half on each domain)"
        );
        anyhow::ensure!(scenario.load.rate >= 2.0, "load.rate must be at least 2 requests a second");
        for step in &scenario.actions {
            anyhow::ensure!(
                step.at < duration,
                "the action at {:?} is past the load's {duration:?}",
                step.at
            );
        }
        Ok(scenario)
    }

    /// Every instance acted on or named by an expectation.
    fn targets(&self) -> Vec<String> {
        let mut names: Vec<String> = self.actions.iter().map(|s| s.action.target().to_owned()).collect();
        names.extend(self.expect.ejected.iter().cloned());
        names.extend(self.expect.readmitted.iter().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// When the first action lands and when the last one ends (the end of a pause or a timed
    /// fault, else the action itself).
    fn window(&self) -> (Duration, Duration) {
        let first = self.actions.first().map_or(Duration::ZERO, |s| s.at);
        let last =
            self.actions.iter().map(|s| s.at + s.action.lasts().unwrap_or_default()).max().unwrap_or(first);
        (first, last.min(self.load.duration))
    }
}

/// What the poller saw: for each target, (time since the start, hurt) at every read.
#[derive(Debug, Default)]
struct Seen {
    targets: BTreeMap<String, Vec<(Duration, bool)>>,
    breakers: BTreeMap<String, Vec<(Duration, bool)>>,
}

async fn poll_status(
    state: MeshState,
    targets: Vec<String>,
    breakers: Vec<String>,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Seen {
    let client = observe::client();
    let mut seen = Seen::default();
    while !stop.load(Ordering::Relaxed) {
        if let Some(snapshot) = observe::fetch(&client, state.router_admin).await {
            let at = start.elapsed();
            for name in &targets {
                if let Ok(instance) = state.instance(name)
                    && let Some(hurt) = snapshot.affected(instance, &state)
                {
                    seen.targets.entry(name.clone()).or_default().push((at, hurt));
                }
            }
            for service in &breakers {
                seen.breakers.entry(service.clone()).or_default().push((at, snapshot.breaker_open(service)));
            }
        }
        tokio::time::sleep(POLL).await;
    }
    seen
}

/// The identity and the business request mixes of one user.
fn mixes(token: &str) -> anyhow::Result<(Mix, Mix)> {
    let auth = HeaderValue::try_from(format!("Bearer {token}"))?;
    let get = |path: &str| RequestSpec {
        method: Method::GET,
        path: path.into(),
        headers: vec![(AUTHORIZATION, auth.clone())],
        body: Bytes::new(),
        unique_idempotency_key: false,
    };
    let identity: Mix = vec![get("/v1/users/me"), get("/v1/quota")].into();
    let business: Mix = vec![get("/v1/orders?limit=5"), get("/v1/articles?limit=5")].into();
    Ok((identity, business))
}

pub(crate) async fn run(state_path: &Path, file: &Path, json: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let scenario = Scenario::parse(&text).with_context(|| format!("{} is not a scenario", file.display()))?;
    let state = MeshState::read(state_path)?;
    for name in scenario.targets() {
        state.instance(&name)?;
    }
    crate::procs::raise_open_file_limit();
    println!("scenario {}: {}", scenario.name, scenario.description.trim());

    // A user of its own each run: its quota window starts empty.
    let unique =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    let email = format!("chaos-{unique}-{}@example.com", std::process::id());
    let token = Api::at(state.router)
        .user(&email, next_setup_source())
        .await
        .context("signing up the load's user")?;
    let (identity_mix, business_mix) = mixes(&token)?;
    let spec = &scenario.load;
    let half = |n: f64| n / 2.0;
    let load_of = |mix: Mix| Load {
        target: state.router,
        connections: spec.connections / 2,
        duration: spec.duration,
        pacing: Pacing::Open { rate: half(spec.rate) },
        mixes: vec![mix],
    };
    println!(
        "load: {} connections, {} requests/s for {:?} (identity and business routes, half each)",
        spec.connections, spec.rate, spec.duration
    );

    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let poller = tokio::spawn(poll_status(
        state.clone(),
        scenario.targets(),
        scenario.expect.breaker_opens.clone(),
        start,
        stop.clone(),
    ));
    let identity = tokio::spawn(load_of(identity_mix).run_timeline(SLICE));
    let business = tokio::spawn(load_of(business_mix).run_timeline(SLICE));
    let mut done = tokio::task::JoinSet::new();
    for step in scenario.actions.clone() {
        let state = state.clone();
        tokio::time::sleep_until((start + step.at).into()).await;
        let at = start.elapsed();
        println!("[{:>6.2}s] {}", at.as_secs_f64(), step.action.describe());
        done.spawn(async move {
            let result = step.action.apply(&state).await;
            let line = match &result {
                Ok(did) => format!("[{:>6.2}s]   {did}", start.elapsed().as_secs_f64()),
                Err(e) => format!(
                    "[{:>6.2}s]   {} FAILED: {e:#}",
                    start.elapsed().as_secs_f64(),
                    step.action.describe()
                ),
            };
            println!("{line}");
            result.map(|_| line).map_err(|e| format!("{}: {e:#}", step.action.describe()))
        });
    }
    let (identity_figures, identity_timeline) = identity.await??;
    let (business_figures, business_timeline) = business.await??;
    let mut action_errors = Vec::new();
    let mut actions = Vec::new();
    while let Some(outcome) = done.join_next().await {
        match outcome? {
            Ok(line) => actions.push(line.trim().to_owned()),
            Err(e) => action_errors.push(e),
        }
    }
    stop.store(true, Ordering::Relaxed);
    let seen = poller.await?;

    let mut error_kinds = identity_figures.error_kinds.clone();
    for (kind, n) in &business_figures.error_kinds {
        *error_kinds.entry(kind.clone()).or_default() += n;
    }
    let verdict = judge(
        &scenario,
        [&identity_timeline, &business_timeline],
        &seen,
        error_kinds,
        actions,
        action_errors,
    );
    print_verdict(&verdict, &identity_figures.error_samples, &business_figures.error_samples);
    if let Some(path) = json {
        crate::bench::report::write_json(path, &verdict)?;
    }
    anyhow::ensure!(verdict.passed, "scenario {}: an expectation was not met", scenario.name);
    Ok(())
}

fn phase(name: &'static str, from: Duration, to: Duration, timelines: [&Timeline; 2]) -> Phase {
    let identity = timelines[0].span(from, to);
    let business = timelines[1].span(from, to);
    let mut all = identity.clone();
    merge(&mut all, &business);
    Phase {
        phase: name,
        from_s: from.as_secs_f64(),
        to_s: to.as_secs_f64(),
        sent: all.requests,
        failed: all.errors,
        identity_failed: identity.errors,
        business_failed: business.errors,
        p50_ms: all.quantile_ms(0.5),
        p99_ms: all.quantile_ms(0.99),
    }
}

fn merge(into: &mut Slice, other: &Slice) {
    into.requests += other.requests;
    into.errors += other.errors;
    let _ = into.latencies.add(&other.latencies);
}

/// The first read at or after `from` that says `hurt`.
fn first_seen(samples: &[(Duration, bool)], from: Duration, hurt: bool) -> Option<Duration> {
    samples.iter().find(|(at, h)| *at >= from && *h == hurt).map(|(at, _)| *at)
}

fn judge(
    scenario: &Scenario,
    timelines: [&Timeline; 2],
    seen: &Seen,
    error_kinds: BTreeMap<String, u64>,
    actions: Vec<String>,
    action_errors: Vec<String>,
) -> Verdict {
    let (first, last) = scenario.window();
    let end = scenario.load.duration + SLICE;
    let phases = vec![
        phase("before", Duration::ZERO, first, timelines),
        phase("during", first, last, timelines),
        phase("after", last, end, timelines),
        phase("total", Duration::ZERO, end, timelines),
    ];

    let mut targets = Vec::new();
    for name in scenario.targets() {
        let samples = seen.targets.get(&name).map(Vec::as_slice).unwrap_or_default();
        let steps: Vec<&Step> = scenario.actions.iter().filter(|s| s.action.target() == name).collect();
        let Some(hurt) = steps.iter().find(|s| s.action.hurts()) else {
            targets.push(TargetTimes { target: name, eject_ms: None, readmit_ms: None });
            continue;
        };
        let ejected = first_seen(samples, hurt.at, true);
        // Healed by a later action on it (restart, clear, redis up), or by its own end.
        let healed = steps
            .iter()
            .find(|s| s.at > hurt.at && !s.action.hurts())
            .map(|s| s.at)
            .or_else(|| hurt.action.lasts().map(|d| hurt.at + d));
        let readmitted = match (ejected, healed) {
            (Some(out), Some(healed)) => first_seen(samples, out.max(healed), false).map(|at| at - healed),
            _ => None,
        };
        targets.push(TargetTimes {
            target: name,
            eject_ms: ejected.map(|at| (at - hurt.at).as_millis() as u64),
            readmit_ms: readmitted.map(|d| d.as_millis() as u64),
        });
    }
    let breakers: BTreeMap<String, Option<u64>> = scenario
        .expect
        .breaker_opens
        .iter()
        .map(|service| {
            let samples = seen.breakers.get(service).map(Vec::as_slice).unwrap_or_default();
            let open = first_seen(samples, first, true).map(|at| (at - first).as_millis() as u64);
            (service.clone(), open)
        })
        .collect();

    let expect = &scenario.expect;
    let total = &phases[3];
    let mut judgements = Vec::new();
    let mut at_most = |what: &str, limit: Option<u64>, seen: u64| {
        if let Some(limit) = limit {
            judgements.push(Judgement {
                expectation: format!("{what} <= {limit}"),
                seen: format!("{seen}"),
                met: seen <= limit,
            });
        }
    };
    at_most("failed", expect.max_failed, total.failed);
    at_most("identity failed", expect.identity_max_failed, total.identity_failed);
    at_most("business failed", expect.business_max_failed, total.business_failed);
    at_most("failed after the last action", expect.after_max_failed, phases[2].failed);
    let times = |name: &String| targets.iter().find(|t| &t.target == name);
    for name in &expect.ejected {
        let ms = times(name).and_then(|t| t.eject_ms);
        judgements.push(Judgement {
            expectation: format!("{name} taken out"),
            seen: ms.map_or_else(|| "never seen out".into(), |ms| format!("after {ms} ms")),
            met: ms.is_some(),
        });
    }
    for name in &expect.readmitted {
        let ms = times(name).and_then(|t| t.readmit_ms);
        judgements.push(Judgement {
            expectation: format!("{name} back in"),
            seen: ms.map_or_else(|| "never seen back".into(), |ms| format!("after {ms} ms")),
            met: ms.is_some(),
        });
    }
    for (service, ms) in &breakers {
        judgements.push(Judgement {
            expectation: format!("a breaker of {service} opens"),
            seen: ms.map_or_else(|| "never seen open".into(), |ms| format!("after {ms} ms")),
            met: ms.is_some(),
        });
    }
    for error in &action_errors {
        judgements.push(Judgement {
            expectation: "every action done".into(),
            seen: error.clone(),
            met: false,
        });
    }
    let passed = judgements.iter().all(|j| j.met);
    Verdict {
        scenario: scenario.name.clone(),
        load: scenario.load.clone(),
        phases,
        error_kinds,
        targets,
        breakers,
        actions,
        judgements,
        passed,
    }
}

fn print_verdict(
    verdict: &Verdict,
    identity_samples: &BTreeMap<String, String>,
    business_samples: &BTreeMap<String, String>,
) {
    println!("\nverdict of {}:", verdict.scenario);
    println!(
        "  {:<8} {:>13} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "phase", "window", "sent", "failed", "identity", "business", "p50 ms", "p99 ms"
    );
    for p in &verdict.phases {
        println!(
            "  {:<8} {:>5.2}-{:>5.2}s {:>8} {:>8} {:>9} {:>9} {:>9.1} {:>9.1}",
            p.phase,
            p.from_s,
            p.to_s,
            p.sent,
            p.failed,
            p.identity_failed,
            p.business_failed,
            p.p50_ms,
            p.p99_ms
        );
    }
    for (kind, n) in &verdict.error_kinds {
        let sample =
            identity_samples.get(kind).or_else(|| business_samples.get(kind)).cloned().unwrap_or_default();
        println!("  failed: {n} × {kind}  (e.g. {})", sample.replace('\n', " "));
    }
    for t in &verdict.targets {
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms"));
        println!(
            "  {:<16} time to eject {:>8}   time to re-admit {:>8}",
            t.target,
            ms(t.eject_ms),
            ms(t.readmit_ms)
        );
    }
    for j in &verdict.judgements {
        println!("  {} {:<34} {}", if j.met { "ok  " } else { "FAIL" }, j.expectation, j.seen);
    }
    println!("  verdict: {}", if verdict.passed { "PASS" } else { "FAIL" });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_parses_with_its_actions_in_order() {
        let scenario = Scenario::parse(
            r#"
            name = "kill a gateway"
            [load]
            duration = "10s"
            [expect]
            max_failed = 0
            ejected = ["identity-gw-1"]
            [[action]]
            at = "6s"
            do = "restart"
            target = "identity-gw-1"
            [[action]]
            at = "3s"
            do = "kill"
            target = "identity-gw-1"
            [[action]]
            at = "4s"
            do = "delay"
            target = "orders-1"
            latency = "300ms"
            for = "2s"
            [[action]]
            at = "5s"
            do = "redis-down"
            "#,
        )
        .unwrap();
        assert_eq!(scenario.actions[0].action, Action::Kill { target: "identity-gw-1".into() });
        assert_eq!(scenario.actions[1].action.lasts(), Some(Duration::from_secs(2)));
        assert_eq!(scenario.actions[2].action.target(), "redis");
        assert_eq!(scenario.window(), (Duration::from_secs(3), Duration::from_secs(6)));
        assert_eq!(scenario.expect.max_failed, Some(0));
        assert!(
            Scenario::parse("name = \"x\"\n[[action]]\nat = \"20s\"\ndo = \"kill\"\ntarget = \"a\"").is_err()
        );
        assert!(Scenario::parse("name = \"x\"\n[[action]]\nat = \"1s\"\ndo = \"explode\"").is_err());
    }

    #[test]
    fn times_to_eject_and_readmit_come_from_the_reads() {
        let samples = [
            (Duration::from_millis(2900), false),
            (Duration::from_millis(3400), true),
            (Duration::from_millis(7100), false),
        ];
        assert_eq!(first_seen(&samples, Duration::from_secs(3), true), Some(Duration::from_millis(3400)));
        assert_eq!(first_seen(&samples, Duration::from_secs(6), false), Some(Duration::from_millis(7100)));
        assert_eq!(first_seen(&samples, Duration::from_secs(8), false), None);
    }
}
