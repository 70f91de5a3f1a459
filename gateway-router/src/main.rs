/// mimalloc instead of glibc's allocator: the router allocates and frees small buffers on every
/// request (headers, bodies, futures), and glibc's `malloc`/`free` (arena locks, consolidation)
/// was ~11% of its time under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with_own_admin(
        mesh_core::binary!("gateway-router"),
        gateway_router::config_sources(),
        |cfg, listener, admin, shutdown| {
            gateway_router::serve_with_admin(cfg, listener, Some(admin), shutdown)
        },
    )
    .await
}
