#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with(
        "business-gateway",
        gateway::config_sources(),
        |cfg: gateway::BusinessConfig, listener, shutdown| {
            gateway::serve(gateway::Config { domain: gateway::Domain::Business, ..cfg.0 }, listener, shutdown)
        },
    )
    .await
}
