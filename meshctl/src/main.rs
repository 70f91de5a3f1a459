//! `meshctl`: the operator's CLI.
//!
//! `meshctl up` composes every component's library in this one process on loopback ports, so a
//! new user gets the whole mesh with one command and no other install. Without `REDIS_URL` all
//! components share one in-process memory store (`memory://meshctl`); with it, they use Redis.

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
    /// Run the whole mesh locally until Ctrl-C.
    Up(up::UpArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    mesh_core::telemetry::init("meshctl");
    match cli.command {
        Command::Up(args) => up::run(args).await,
    }
}
