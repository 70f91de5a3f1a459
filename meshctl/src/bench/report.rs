//! What a bench run prints and writes: the machine, the binaries, a table per scenario, and the
//! whole run as JSON.
//!
//! A figure means nothing without the machine and the build that produced it, so both head
//! the terminal output and the JSON.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use super::load::Figures;

/// The machine the figures were measured on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: usize,
    pub(crate) cpu_model: String,
    pub(crate) kernel: String,
}

/// The programs measured.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Binaries {
    /// This program (the load generator).
    pub(crate) meshctl: String,
    /// The `meshctl` whose `up` runs the mesh (chain, ladder).
    pub(crate) mesh: String,
    /// The `gateway-router` of the hop scenario.
    pub(crate) router: String,
    pub(crate) nginx: Option<String>,
    pub(crate) redis: Option<String>,
}

/// Requests and errors of a scenario in all; the suite checks these.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub(crate) struct Totals {
    pub(crate) requests: u64,
    pub(crate) errors: u64,
}

// === impl Machine ===

impl Machine {
    pub(crate) fn this_one() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|line| line.starts_with("model name"))
            .and_then(|line| line.split_once(':'))
            .map_or_else(|| "unknown".into(), |(_, model)| model.trim().to_owned());
        let kernel =
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned();
        Self { cores, cpu_model, kernel }
    }
}

// === impl Totals ===

impl Totals {
    pub(crate) fn of<'a>(figures: impl IntoIterator<Item = &'a Figures>) -> Self {
        figures.into_iter().fold(Self::default(), |t, f| Self {
            requests: t.requests + f.requests,
            errors: t.errors + f.errors,
        })
    }

    pub(crate) fn add(self, other: Self) -> Self {
        Self { requests: self.requests + other.requests, errors: self.errors + other.errors }
    }
}

pub(crate) fn print_header(machine: &Machine, binaries: &Binaries, short: bool) {
    println!("meshctl bench ({} mode)", if short { "short" } else { "full" });
    println!("  machine  {} cores, {}, Linux {}", machine.cores, machine.cpu_model, machine.kernel);
    println!("  load     {}", binaries.meshctl);
    println!("  mesh     {}", binaries.mesh);
    println!("  router   {}", binaries.router);
    if let Some(nginx) = &binaries.nginx {
        println!("  nginx    {nginx}");
    }
    if let Some(redis) = &binaries.redis {
        println!("  redis    {redis}");
    }
}

pub(crate) fn print_table_head(title: &str) {
    println!("\n{title}");
    println!(
        "  {:<34} {:>6} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "run", "conns", "pacing", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
}

pub(crate) fn print_row(label: &str, f: &Figures) {
    let pacing = match f.target_rate {
        Some(rate) => format!("@{rate:.0}"),
        None => f.pacing.into(),
    };
    println!(
        "  {:<34} {:>6} {:>7} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>8}",
        label, f.connections, pacing, f.rps, f.p50_ms, f.p99_ms, f.p999_ms, f.max_ms, f.errors
    );
    if !f.error_kinds.is_empty() {
        let kinds: Vec<String> = f.error_kinds.iter().map(|(kind, n)| format!("{kind}: {n}")).collect();
        println!("  {:<34} errors by kind: {}", "", kinds.join(", "));
        for (kind, sample) in &f.error_samples {
            println!("  {:<34} first {kind}: {sample}", "");
        }
    }
}

/// MiB from KiB, for the terminal.
pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Writes `report` as pretty JSON to `path`, creating its directory.
pub(crate) fn write_json(path: &Path, report: &impl Serialize) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// The first line a program prints for `flag` (its version), if it runs.
pub(crate) fn version_of(program: &Path, flag: &str) -> Option<String> {
    let out = std::process::Command::new(program).arg(flag).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text).lines().next().map(|line| line.trim().to_owned())
}

/// `path` as shown to a reader: absolute when it can be.
pub(crate) fn shown(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path)).display().to_string()
}
