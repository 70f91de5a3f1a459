#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with(
        "identity-gateway",
        gateway::config_sources(),
        |cfg: gateway::Config, listener, shutdown| {
            gateway::serve(gateway::Config { domain: gateway::Domain::Identity, ..cfg }, listener, shutdown)
        },
    )
    .await
}
