/// mimalloc instead of glibc's allocator: faster for the many small allocations of each call,
/// and it gives freed memory back to the system rather than keeping it in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run_with(
        mesh_core::binary!("identity-gateway"),
        gateway::config_sources(),
        |cfg: gateway::Config, listener, shutdown| {
            gateway::serve(gateway::Config { domain: gateway::Domain::Identity, ..cfg }, listener, shutdown)
        },
    )
    .await
}
