#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("analytics-service", analytics_service::serve).await
}
