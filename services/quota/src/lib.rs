//! The quota service: plans with request limits, and an atomic consume-and-report per principal
//! per fixed window, shared by every replica through the store.
//!
//! Windows are aligned to the epoch (`[k·w, (k+1)·w)`), so every replica agrees on when a window
//! resets without coordinating, and the counter of a window is one key that expires with it.
//! Counting is one atomic `add_bounded` on the store: concurrent consumers on any number of
//! replicas can never admit more than the limit.
//!
//! # Layout
//! - [`config`]: listen addresses, store, plans.
//! - [`service`]: the `QuotaService` implementation.

pub mod config;
pub mod service;

pub use config::{Config, Plan};
pub use service::QuotaApi;

use mesh_core::process::Shutdown;
use mesh_core::store::Store;
use mesh_proto::quota::quota_service_server::{QuotaServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;

/// Serves the quota service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let store = Store::connect(&cfg.store).await?;
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "quota service serving");
    let routes = tonic::service::Routes::new(QuotaServiceServer::new(QuotaApi::new(cfg.clone(), store)));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
