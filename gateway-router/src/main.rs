#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with("gateway-router", gateway_router::config_sources(), gateway_router::serve)
        .await
}
