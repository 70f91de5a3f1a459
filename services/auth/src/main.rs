/// mimalloc instead of glibc's allocator: faster for the many small allocations of each call,
/// and it gives freed memory back to the system rather than keeping it in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sources = mesh_core::config::Sources::from_process().with_list_keys(auth_service::config::LIST_KEYS);
    mesh_core::process::run_with(mesh_core::binary!("auth-service"), sources, auth_service::serve).await
}
