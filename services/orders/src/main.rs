#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run("orders-service", orders_service::serve).await
}
