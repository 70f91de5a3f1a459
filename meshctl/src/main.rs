//! `meshctl`: the operator's CLI.

mod bench;
mod status;
mod up;

use clap::{Parser, Subcommand};

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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mesh_core::telemetry::init_cli("meshctl");
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}
