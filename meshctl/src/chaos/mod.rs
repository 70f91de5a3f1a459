//! `meshctl chaos`: break a running `meshctl up --processes` mesh and see what it does
//! (docs/chaos.md).
//!
//! The instances come from `up`'s state file. `kill` and `pause` signal the process
//! themselves (a real SIGKILL, a real SIGSTOP); `restart` and `redis up` ask `up`, the parent
//! of every child, over its control endpoint; `delay`, `fail` and `clear` set the fault layer
//! on the instance's admin port ([`mesh_core::fault_inject`]). Each prints what it did, then
//! what the mesh saw (from the router's `/mesh/status`). `run FILE` plays a scenario under
//! load and prints a verdict ([`scenario`]).
//!
//! # Layout
//! - [`observe`]: the router's status read as ejections, short services, breakers, fallbacks.
//! - [`scenario`]: scenario files, the load they run under, the verdict table.

mod observe;
mod scenario;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use humantime_serde::re::humantime;
use rustix::process::{Pid, Signal, kill_process};
use serde::Deserialize;
use serde_json::json;

use crate::state::{Instance, MeshState};

#[derive(clap::Args, Debug)]
pub(crate) struct ChaosArgs {
    /// The state file of the `meshctl up --processes` to act on. Default: the one `up` writes
    /// by default.
    #[arg(long, env = "MESHCTL_STATE", global = true)]
    state: Option<PathBuf>,
    /// How long to watch `/mesh/status` for the mesh to react to a single action.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration, global = true)]
    watch: Duration,
    #[command(subcommand)]
    command: ChaosCommand,
}

#[derive(clap::Subcommand, Debug)]
enum ChaosCommand {
    /// The mesh's instances: name, pid, addresses.
    List,
    /// SIGKILL an instance: a crash, no drain.
    Kill { instance: String },
    /// SIGSTOP an instance for a while, then SIGCONT: a hung process.
    Pause {
        instance: String,
        #[arg(long = "for", default_value = "5s", value_parser = humantime::parse_duration)]
        duration: Duration,
    },
    /// Start an instance again (killed first if it still runs), on the same addresses.
    Restart { instance: String },
    /// Add latency to an instance's requests (its fault layer).
    Delay {
        instance: String,
        #[arg(long, value_parser = humantime::parse_duration)]
        latency: Duration,
        /// Share of requests delayed.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// The fault ends by itself after this long (default: until `chaos clear`).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Fail a share of an instance's requests with an error status (its fault layer).
    Fail {
        instance: String,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 503)]
        status: u16,
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
    },
    /// Remove an instance's injected delay or failures.
    Clear { instance: String },
    /// Stop (SIGKILL) or start again the redis-server `meshctl up --processes` started.
    Redis {
        #[arg(value_enum)]
        what: RedisWhat,
    },
    /// Play a scenario file under load and judge it (exit 1 when an expectation fails).
    Run {
        file: PathBuf,
        /// Also write the verdict as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RedisWhat {
    Down,
    Up,
}

/// One thing done to the mesh: a command, or a step of a scenario.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case")]
pub(crate) enum Action {
    Kill {
        target: String,
    },
    Pause {
        target: String,
        #[serde(rename = "for", with = "humantime_serde")]
        duration: Duration,
    },
    Restart {
        target: String,
    },
    Delay {
        target: String,
        #[serde(with = "humantime_serde")]
        latency: Duration,
        #[serde(default)]
        rate: Option<f64>,
        #[serde(rename = "for", default, with = "humantime_serde")]
        duration: Option<Duration>,
    },
    Fail {
        target: String,
        rate: f64,
        #[serde(default)]
        status: Option<u16>,
        #[serde(rename = "for", default, with = "humantime_serde")]
        duration: Option<Duration>,
    },
    Clear {
        target: String,
    },
    RedisDown,
    RedisUp,
}

// === impl Action ===

impl Action {
    /// The instance acted on.
    pub(crate) fn target(&self) -> &str {
        match self {
            Self::Kill { target }
            | Self::Pause { target, .. }
            | Self::Restart { target }
            | Self::Delay { target, .. }
            | Self::Fail { target, .. }
            | Self::Clear { target } => target,
            Self::RedisDown | Self::RedisUp => "redis",
        }
    }

    /// Whether it hurts its target (else it heals it).
    pub(crate) fn hurts(&self) -> bool {
        matches!(
            self,
            Self::Kill { .. } | Self::Pause { .. } | Self::Delay { .. } | Self::Fail { .. } | Self::RedisDown
        )
    }

    /// How long it lasts by itself: a pause, or a fault with `for`.
    pub(crate) fn lasts(&self) -> Option<Duration> {
        match self {
            Self::Pause { duration, .. } => Some(*duration),
            Self::Delay { duration, .. } | Self::Fail { duration, .. } => *duration,
            _ => None,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Kill { target } => format!("kill {target}"),
            Self::Pause { target, duration } => format!("pause {target} for {duration:?}"),
            Self::Restart { target } => format!("restart {target}"),
            Self::Delay { target, latency, rate, duration } => format!(
                "delay {target} by {latency:?} ({}% of requests{})",
                rate.unwrap_or(1.0) * 100.0,
                duration.map(|d| format!(", for {d:?}")).unwrap_or_default()
            ),
            Self::Fail { target, rate, status, duration } => format!(
                "fail {}% of {target}'s requests with {}{}",
                rate * 100.0,
                status.unwrap_or(503),
                duration.map(|d| format!(", for {d:?}")).unwrap_or_default()
            ),
            Self::Clear { target } => format!("clear {target}'s faults"),
            Self::RedisDown => "redis down".into(),
            Self::RedisUp => "redis up".into(),
        }
    }

    /// Does it. A pause returns once the process runs again.
    pub(crate) async fn apply(&self, state: &MeshState) -> anyhow::Result<String> {
        let instance = state.instance(self.target())?;
        match self {
            Self::Kill { .. } | Self::RedisDown => {
                let pid = signal(instance, Signal::KILL)?;
                Ok(format!("sent SIGKILL to {} (pid {pid})", instance.name))
            }
            Self::Pause { duration, .. } => {
                let pid = signal(instance, Signal::STOP)?;
                tokio::time::sleep(*duration).await;
                signal(instance, Signal::CONT)?;
                Ok(format!(
                    "{} (pid {pid}) stopped (SIGSTOP) for {duration:?}, then continued",
                    instance.name
                ))
            }
            Self::Restart { .. } | Self::RedisUp => {
                let pid = restart(state, &instance.name).await?;
                Ok(format!("{} restarted by meshctl up (pid {pid}), ready", instance.name))
            }
            Self::Delay { latency, rate, duration, .. } => {
                let spec = json!({
                    "delay": humantime::format_duration(*latency).to_string(),
                    "delay_rate": rate.unwrap_or(1.0),
                    "duration": duration.map(|d| humantime::format_duration(d).to_string()),
                });
                fault(instance, Some(spec)).await?;
                Ok(format!("{}'s fault layer: {}", instance.name, self.describe()))
            }
            Self::Fail { rate, status, duration, .. } => {
                let spec = json!({
                    "abort_rate": rate,
                    "abort_status": status.unwrap_or(503),
                    "duration": duration.map(|d| humantime::format_duration(d).to_string()),
                });
                fault(instance, Some(spec)).await?;
                Ok(format!("{}'s fault layer: {}", instance.name, self.describe()))
            }
            Self::Clear { .. } => {
                fault(instance, None).await?;
                Ok(format!("{}'s faults removed", instance.name))
            }
        }
    }
}

fn signal(instance: &Instance, signal: Signal) -> anyhow::Result<u32> {
    let pid = instance.pid.with_context(|| {
        format!("{} is not running (`meshctl chaos restart {}`)", instance.name, instance.name)
    })?;
    let raw = Pid::from_raw(pid as i32).context("a pid of 0")?;
    kill_process(raw, signal).with_context(|| format!("signalling {} (pid {pid})", instance.name))?;
    Ok(pid)
}

/// Asks `meshctl up` to restart `name`; its new pid.
async fn restart(state: &MeshState, name: &str) -> anyhow::Result<u32> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(90)).build()?;
    let url = format!("http://{}/control/restart/{name}", state.control);
    let response = client
        .post(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach meshctl up at {} (is it running?)", state.control))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "restarting {name}: {status} {}", body.trim());
    let answer: serde_json::Value = serde_json::from_str(&body).context("the restart answer")?;
    answer["pid"].as_u64().map(|pid| pid as u32).context("a restart answer without pid")
}

/// Sets (`Some`) or removes (`None`) the fault on `instance`'s admin port.
async fn fault(instance: &Instance, spec: Option<serde_json::Value>) -> anyhow::Result<()> {
    let admin = instance.admin.with_context(|| format!("{} has no fault layer", instance.name))?;
    let client = observe::client();
    let url = format!("http://{admin}/fault");
    let request = match spec {
        Some(spec) => client.put(&url).json(&spec),
        None => client.delete(&url),
    };
    let response =
        request.send().await.with_context(|| format!("cannot reach {}'s admin at {admin}", instance.name))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "{}'s fault layer answered {status}: {}",
        instance.name,
        body.trim()
    );
    Ok(())
}

fn state_path(args: &ChaosArgs) -> PathBuf {
    args.state.clone().unwrap_or_else(crate::state::default_path)
}

pub(crate) async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let path = state_path(&args);
    let state = MeshState::read(&path)?;
    let action = match &args.command {
        ChaosCommand::List => {
            println!("  {:<16} {:>8}  {:<22} admin", "instance", "pid", "address");
            for i in &state.instances {
                let pid = i.pid.map_or_else(|| "down".to_owned(), |p| p.to_string());
                let admin = i.admin.map_or_else(|| "-".to_owned(), |a| a.to_string());
                println!("  {:<16} {pid:>8}  {:<22} {admin}", i.name, i.addr.to_string());
            }
            return Ok(());
        }
        ChaosCommand::Run { file, json } => return scenario::run(&path, file, json.as_deref()).await,
        ChaosCommand::Kill { instance } => Action::Kill { target: instance.clone() },
        ChaosCommand::Pause { instance, duration } => {
            Action::Pause { target: instance.clone(), duration: *duration }
        }
        ChaosCommand::Restart { instance } => Action::Restart { target: instance.clone() },
        ChaosCommand::Delay { instance, latency, rate, duration } => Action::Delay {
            target: instance.clone(),
            latency: *latency,
            rate: Some(*rate),
            duration: *duration,
        },
        ChaosCommand::Fail { instance, rate, status, duration } => {
            Action::Fail { target: instance.clone(), rate: *rate, status: Some(*status), duration: *duration }
        }
        ChaosCommand::Clear { instance } => Action::Clear { target: instance.clone() },
        ChaosCommand::Redis { what: RedisWhat::Down } => Action::RedisDown,
        ChaosCommand::Redis { what: RedisWhat::Up } => Action::RedisUp,
    };
    one_action(&state, &action, args.watch).await
}

/// Does `action`, then watches the router's status (at most `watch`) until the mesh shows the
/// target hurt (or healed), and prints what it saw.
async fn one_action(state: &MeshState, action: &Action, watch: Duration) -> anyhow::Result<()> {
    let target = state.instance(action.target())?.clone();
    let client = observe::client();
    let started = Instant::now();
    // A pause lasts: the mesh is watched while the process is stopped.
    let watcher = {
        let (client, state, target, hurts) = (client.clone(), state.clone(), target.clone(), action.hurts());
        tokio::spawn(async move { wait_seen(&client, &state, &target, hurts, watch).await })
    };
    let did = action.apply(state).await?;
    println!("{did}");
    match watcher.await? {
        Some(Some(after)) => {
            let what = if action.hurts() { "out of the mesh" } else { "back in the mesh" };
            println!("the mesh saw {} {what} {} ms after the action", target.name, after.as_millis());
        }
        Some(None) => println!("the mesh showed no change for {} within {watch:?}", target.name),
        None => {}
    }
    let elapsed = started.elapsed();
    match observe::fetch(&client, state.router_admin).await {
        Some(snapshot) => {
            println!("what the mesh sees now ({} ms after the action):", elapsed.as_millis());
            print!("{}", snapshot.summary(state));
        }
        None => println!("the router's admin at {} does not answer", state.router_admin),
    }
    Ok(())
}

/// Polls the status until `target` shows hurt (`hurts`) or healed; the time that took, None
/// inside when not within `watch`, None outside when the target does not show in the status.
async fn wait_seen(
    client: &reqwest::Client,
    state: &MeshState,
    target: &Instance,
    hurts: bool,
    watch: Duration,
) -> Option<Option<Duration>> {
    let started = Instant::now();
    loop {
        if let Some(snapshot) = observe::fetch(client, state.router_admin).await {
            match snapshot.affected(target, state) {
                None => return None,
                Some(affected) if affected == hurts => return Some(Some(started.elapsed())),
                Some(_) => {}
            }
        }
        if started.elapsed() >= watch {
            return Some(None);
        }
        tokio::time::sleep(scenario::POLL).await;
    }
}
