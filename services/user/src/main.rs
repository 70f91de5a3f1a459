#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("user-service", user_service::serve).await
}
