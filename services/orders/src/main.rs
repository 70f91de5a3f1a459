/// mimalloc instead of glibc's allocator: faster for the many small allocations of each call,
/// and it gives freed memory back to the system rather than keeping it in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `MESH_ARTICLES__ENDPOINTS=http://a:50055,http://b:50055` is a list.
    let sources = mesh_core::config::Sources::from_process().with_list_key("articles.endpoints");
    mesh_core::process::run_with("orders-service", sources, orders_service::serve).await
}
