#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with_own_admin(
        "gateway-router",
        gateway_router::config_sources(),
        |cfg, listener, admin, shutdown| {
            gateway_router::serve_with_admin(cfg, listener, Some(admin), shutdown)
        },
    )
    .await
}
