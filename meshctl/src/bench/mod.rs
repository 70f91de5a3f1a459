//! `meshctl bench`: a bench anyone can run, bounded and loopback-only (docs/bench.md).
//!
//! It answers the questions a user comparing the mesh with what they would pick instead asks:
//! is one router hop as cheap as nginx's (*hop*), how fast is an authenticated request through
//! the whole chain and where does its time go (*chain*), and how many simultaneous users does
//! the mesh carry within its bounds (*ladder*). Every child process it starts (backend, nginx,
//! router, mesh, Redis) dies with it, temporary files go with it, and no load leaves loopback.
//!
//! # Layout
//! - [`load`]: the load generator (closed and open loop, HdrHistogram), on [`conn`]'s
//!   connections, each from its own source address.
//! - [`hop`], [`chain`], [`ladder`]: the scenarios; [`backend`] the hop's trivial backend.
//! - [`mesh`]: `meshctl up` as a child and the API calls that prepare it; [`crate::procs`] the child
//!   processes, temp dirs and waits (shared with `up --processes`); [`metrics`] the per-hop breakdown.
//! - [`report`]: the terminal tables and the JSON; [`chart`]: the SVG charts.

mod backend;
mod chain;
mod chart;
pub(crate) mod conn;
mod hop;
mod ladder;
pub(crate) mod load;
pub(crate) mod mesh;
mod metrics;
pub(crate) mod report;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

use crate::procs;
use report::{Binaries, Machine, Totals};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scenario {
    /// gateway-router against nginx, one hop in front of a trivial backend.
    Hop,
    /// The whole mesh, embedded store then Redis, route by route.
    Chain,
    /// Simultaneous users, step by step, each step judged.
    Ladder,
    /// Every scenario.
    All,
    /// The hop's trivial backend (started by the bench itself).
    #[value(hide = true)]
    Backend,
}

#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// About a second of load per run and small connection counts: cheap enough for the tests.
    #[arg(long)]
    short: bool,
    /// Where the whole run is written as JSON. Default: target/bench/bench-<unix time>.json.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Where the SVG charts go. Default: target/bench/.
    #[arg(long, default_value = "target/bench")]
    svg_dir: PathBuf,
    /// The `meshctl` whose `up` runs the mesh (an older build works: only `up` is used).
    /// Default: this program.
    #[arg(long)]
    mesh_bin: Option<PathBuf>,
    /// The `gateway-router` of the hop scenario. Default: the one beside this program.
    #[arg(long)]
    router_bin: Option<PathBuf>,
    /// The backend's listen address (hidden: for `bench backend`).
    #[arg(long, hide = true)]
    listen: Option<SocketAddr>,
}

/// How long and how wide each scenario runs, full or short.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    short: bool,
}

// === impl Settings ===

impl Settings {
    fn load_duration(self) -> Duration {
        if self.short { Duration::from_secs(1) } else { Duration::from_secs(8) }
    }

    /// Unmeasured load before each hop run, so both proxies start warm.
    fn warmup(self) -> Duration {
        if self.short { Duration::from_millis(200) } else { Duration::from_secs(1) }
    }

    fn hop_rounds(self) -> u32 {
        if self.short { 1 } else { 2 }
    }

    fn hop_connections(self) -> usize {
        if self.short { 16 } else { 64 }
    }

    fn chain_connections(self) -> [usize; 2] {
        if self.short { [16, 100] } else { [64, 1000] }
    }

    fn ladder_steps(self) -> Vec<usize> {
        if self.short { vec![5, 10, 25] } else { vec![5, 10, 25, 50, 100, 200, 500, 1000] }
    }

    fn ladder_step_duration(self) -> Duration {
        if self.short { Duration::from_secs(1) } else { Duration::from_secs(10) }
    }

    /// How long after the last load the mesh's memory is read again.
    fn settle(self) -> Duration {
        if self.short { Duration::from_secs(1) } else { Duration::from_secs(5) }
    }
}

/// Everything a run measured, as written to the JSON file.
#[derive(Debug, Serialize)]
struct Report {
    started_unix: u64,
    mode: &'static str,
    machine: Machine,
    binaries: Binaries,
    #[serde(flatten)]
    totals: Totals,
    scenarios: Scenarios,
}

#[derive(Debug, Default, Serialize)]
struct Scenarios {
    #[serde(skip_serializing_if = "Option::is_none")]
    hop: Option<hop::HopReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chain: Option<chain::ChainReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ladder: Option<ladder::LadderReport>,
}

pub(crate) async fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.scenario == Scenario::Backend {
        let listen = args.listen.context("bench backend needs --listen ADDR")?;
        return backend::serve(listen).await;
    }
    // Dropping the run stops every child it started and removes its files: on Ctrl-C, and on
    // SIGTERM too (`timeout`, a CI runner), which would otherwise end this process and leave
    // the children behind.
    tokio::select! {
        result = run_scenarios(args) => result,
        _ = mesh_core::shutdown::signal() => {
            anyhow::bail!("interrupted: every process the bench started is stopped")
        }
    }
}

async fn run_scenarios(args: BenchArgs) -> anyhow::Result<()> {
    let settings = Settings { short: args.short };
    procs::raise_open_file_limit();
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let this = std::env::current_exe().context("finding this program")?;
    let mesh_bin = args.mesh_bin.clone().unwrap_or_else(|| this.clone());
    let router_bin = args.router_bin.clone().unwrap_or_else(|| this.with_file_name("gateway-router"));
    let machine = Machine::this_one();
    let binaries = binaries(&this, &mesh_bin, &router_bin);
    report::print_header(&machine, &binaries, args.short);

    let wants = |s: Scenario| args.scenario == s || args.scenario == Scenario::All;
    let mut scenarios = Scenarios::default();
    if wants(Scenario::Hop) {
        scenarios.hop = Some(hop::run(&settings, &router_bin).await?);
    }
    if wants(Scenario::Chain) {
        scenarios.chain = Some(chain::run(&settings, &mesh_bin).await?);
    }
    if wants(Scenario::Ladder) {
        scenarios.ladder = Some(ladder::run(&settings, &mesh_bin).await?);
    }

    let totals = [
        scenarios.hop.as_ref().map(|s| s.totals),
        scenarios.chain.as_ref().map(|s| s.totals),
        scenarios.ladder.as_ref().map(|s| s.totals),
    ]
    .into_iter()
    .flatten()
    .fold(Totals::default(), Totals::add);
    write_charts(&args.svg_dir, &scenarios);
    let json = args.json.unwrap_or_else(|| PathBuf::from(format!("target/bench/bench-{started_unix}.json")));
    let mode = if args.short { "short" } else { "full" };
    let report = Report { started_unix, mode, machine, binaries, totals, scenarios };
    report::write_json(&json, &report)?;
    println!(
        "\n{} requests, {} errors; the whole run: {}",
        totals.requests,
        totals.errors,
        report::shown(&json)
    );
    Ok(())
}

fn binaries(this: &Path, mesh_bin: &Path, router_bin: &Path) -> Binaries {
    let nginx = procs::find_program("nginx").and_then(|p| report::version_of(&p, "-v"));
    let redis = procs::find_program("redis-server").and_then(|p| report::version_of(&p, "--version"));
    Binaries {
        meshctl: report::shown(this),
        mesh: report::shown(mesh_bin),
        router: report::shown(router_bin),
        nginx,
        redis,
    }
}

/// Charts are a view of the JSON: failing to draw one is said, never fatal.
fn write_charts(dir: &Path, scenarios: &Scenarios) {
    if let Err(e) = std::fs::create_dir_all(dir) {
        println!("charts: cannot create {}: {e}", dir.display());
        return;
    }
    let mut drawn = Vec::new();
    if let Some(hop) = scenarios.hop.as_ref().filter(|h| !h.runs.is_empty()) {
        drawn.push(chart::hop(dir, &hop.runs));
    }
    if let Some(ladder) = &scenarios.ladder {
        drawn.push(chart::ladder(dir, &ladder.steps));
    }
    for chart in drawn {
        match chart {
            Ok(path) => println!("chart: {}", report::shown(&path)),
            Err(e) => println!("chart not drawn: {e:#}"),
        }
    }
}
