/// mimalloc instead of glibc's allocator: faster for the many small allocations of each call,
/// and it gives freed memory back to the system rather than keeping it in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    mesh_core::process::run(mesh_core::binary!("articles-service"), articles_service::serve).await
}
