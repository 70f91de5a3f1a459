//! `meshctl`: the operator's CLI.

mod bench;
mod chaos;
mod config_cmd;
mod procs;
mod state;
mod status;
mod up;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: `meshctl up` runs the whole mesh in this process, and
/// glibc's malloc/free was a fifth of its time under load (the profile of `GET /v1/users/me`);
/// mimalloc also gives freed memory back to the system after a burst.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "meshctl", version, about = "Run and inspect the mesh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the whole mesh locally (router, gateways, services) until Ctrl-C.
    Up(up::UpArgs),
    /// Show the running mesh: pools, instances, and each gateway's services.
    Status(status::StatusArgs),
    /// Measure the mesh: the router against nginx, the whole chain, a ladder of users.
    Bench(bench::BenchArgs),
    /// Break a running `meshctl up --processes` mesh (kill, pause, delay, fail, Redis down) and
    /// see what it does; `chaos run FILE` plays a scenario under load and judges it.
    Chaos(chaos::ChaosArgs),
    /// Check, print or document any component's configuration (`meshctl config --help`).
    Config(config_cmd::ConfigArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Prints to stdout and exits: no telemetry, so nothing mixes with the output.
    let command = match cli.command {
        Command::Config(args) => return config_cmd::run(args),
        other => other,
    };
    mesh_core::telemetry::init_cli("meshctl");
    match command {
        Command::Up(args) => up::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Chaos(args) => chaos::run(args).await,
        Command::Config(_) => Ok(()),
    }
}
