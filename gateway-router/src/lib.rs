//! The front router: the one door every client uses. It classifies each request by an ordered
//! rule table and forwards it to a gateway pool.
//!
//! This is the pass-through stage: classification, streaming forwarding and proxy header
//! hygiene. Health-checked pools, least-loaded balancing, failover and isolation arrive with the
//! router issue (ARCHITECTURE §4).
//!
//! # Layout
//! - [`config`]: listen address, rule table, pools.
//! - [`classify`]: the pure classification function.
//! - [`proxy`]: the forwarding hop.

pub mod classify;
pub mod config;
pub mod proxy;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_core::admin::{self, Readiness};
use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use tokio::net::TcpListener;

pub use config::Config;

/// Serves the router on `listener` until `shutdown`.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let drain = Drain::new();
    tokio::spawn({
        let drain = drain.clone();
        async move {
            shutdown.await;
            drain.trigger();
        }
    });
    let readiness = Readiness::new(drain.clone());
    readiness.set_started();
    tracing::info!(addr = %listener.local_addr()?, "router serving");
    let proxy = proxy::Proxy::new(Arc::new(cfg));
    let app = admin::router(readiness).merge(axum::Router::new().fallback(proxy::forward).with_state(proxy));
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(drain.signaled())
        .await?;
    Ok(())
}
