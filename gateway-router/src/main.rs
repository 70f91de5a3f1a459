#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("gateway-router", gateway_router::serve).await
}
