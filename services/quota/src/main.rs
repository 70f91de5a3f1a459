#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("quota-service", quota_service::serve).await
}
