//! The ladder scenario: seed 004's capacity story, as simultaneous users, step by step.
//!
//! Each simulated user is an account of its own, registered and logged in from its own source
//! address, on its own connection, walking a journey — `GET /v1/users/me`, `GET /v1/articles`,
//! `GET /v1/dashboard` — with a think time of [`THINK`] after each answer, as a person reading
//! the page would. A step passes with no error and a p99 under [`P99_BOUND`]; each step gets a
//! verdict line, and so does the whole ladder. Users are signed up before the step that first
//! needs them, outside its measured time, and stay for the steps after it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::Settings;
use super::chain::request;
use super::conn::{self, LOAD_BLOCK};
use super::load::{Figures, Load, Mix, Pacing};
use super::mesh::{Api, MeshChild};
use super::report::{self, Totals};
use crate::procs::PeakRss;

/// The pause after each answer.
pub(crate) const THINK: Duration = Duration::from_millis(100);
/// A step passes when its p99 is under this (and no request failed).
pub(crate) const P99_BOUND: Duration = Duration::from_millis(500);

/// One step of the ladder.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Step {
    pub(crate) users: usize,
    pub(crate) figures: Figures,
    pub(crate) passed: bool,
    pub(crate) verdict: String,
    /// The mesh process's peak resident memory during the step, KiB.
    pub(crate) rss_peak_kib: u64,
}

/// What the ladder found.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LadderReport {
    #[serde(flatten)]
    pub(crate) totals: Totals,
    pub(crate) think_ms: u64,
    pub(crate) p99_bound_ms: u64,
    pub(crate) steps: Vec<Step>,
    pub(crate) passed: bool,
    pub(crate) verdict: String,
}

pub(crate) async fn run(settings: &Settings, mesh_bin: &Path) -> anyhow::Result<LadderReport> {
    report::print_table_head(&format!(
        "ladder: simultaneous users, journey users/me → articles → dashboard, {} ms think time",
        THINK.as_millis()
    ));
    let mesh = MeshChild::start(mesh_bin, None).await?;
    let mut mixes: Vec<Mix> = Vec::new();
    let mut steps = Vec::new();
    for users in settings.ladder_steps() {
        sign_up(mesh.api(), &mut mixes, users).await?;
        let peak = PeakRss::watch(mesh.pid());
        let load = Load {
            target: mesh.router(),
            connections: users,
            duration: settings.ladder_step_duration(),
            pacing: Pacing::Closed { think: THINK },
            mixes: mixes[..users].to_vec(),
        };
        let figures = load.run().await?;
        let step = judge(users, figures, peak.peak());
        report::print_row(&format!("{users} users"), &step.figures);
        println!("  {:<34} {}", "", step.verdict);
        steps.push(step);
    }
    mesh.stop().await;

    let passed = steps.iter().all(|s| s.passed);
    let failed: Vec<String> = steps.iter().filter(|s| !s.passed).map(|s| s.users.to_string()).collect();
    let verdict = if passed {
        format!("ladder PASS: every step up to {} users", steps.last().map_or(0, |s| s.users))
    } else {
        format!("ladder FAIL at {} users", failed.join(", "))
    };
    println!("  {verdict}");
    Ok(LadderReport {
        totals: Totals::of(steps.iter().map(|s| &s.figures)),
        think_ms: THINK.as_millis() as u64,
        p99_bound_ms: P99_BOUND.as_millis() as u64,
        steps,
        passed,
        verdict,
    })
}

fn judge(users: usize, figures: Figures, rss_peak_kib: u64) -> Step {
    let bound_ms = P99_BOUND.as_secs_f64() * 1000.0;
    let passed = figures.errors == 0 && figures.p99_ms < bound_ms;
    let verdict = format!(
        "{}: {users} users, {} errors, p99 {:.1} ms (bound {bound_ms:.0} ms)",
        if passed { "PASS" } else { "FAIL" },
        figures.errors,
        figures.p99_ms
    );
    Step { users, figures, passed, verdict, rss_peak_kib }
}

/// Registers and logs in users until there are `users` of them, as many at once as there are
/// cores (each is two password hashes, and auth refuses a hash that waits too long).
async fn sign_up(api: Api, mixes: &mut Vec<Mix>, users: usize) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = Arc::new(Semaphore::new(cores));
    let mut signing = JoinSet::new();
    for index in mixes.len()..users {
        let slots = slots.clone();
        signing.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            // The user signs up from the address its connection will use.
            let source = conn::source_address(LOAD_BLOCK, index);
            let token = api.user(&format!("bench-user-{index}@example.com"), source).await?;
            anyhow::Ok((index, token))
        });
    }
    let mut tokens = Vec::new();
    while let Some(done) = signing.join_next().await {
        tokens.push(done??);
    }
    tokens.sort_by_key(|(index, _)| *index);
    mixes.extend(tokens.iter().map(|(_, token)| journey(token)));
    Ok(())
}

/// The journey of one user.
fn journey(token: &str) -> Mix {
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a valid header value");
    ["/v1/users/me", "/v1/articles", "/v1/dashboard"]
        .into_iter()
        .map(|path| request(Method::GET, path, &auth, Bytes::new(), false))
        .collect::<Vec<_>>()
        .into()
}
