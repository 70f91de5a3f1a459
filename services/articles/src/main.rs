#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("articles-service", articles_service::serve).await
}
