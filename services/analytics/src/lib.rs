//! The analytics service: product events counted per owner, and summaries of those counts over
//! the last few minutes to the last week.
//!
//! An event is not stored; it is counted. Each event adds one to its type's field in two hash
//! buckets of its owner: the minute it happened in and the hour it happened in. A summary sums
//! the buckets that cover its window in one round trip: minute buckets up to an hour, hour
//! buckets above (at most 169 hashes for a week). Counting is an atomic `HINCRBY`, so any number
//! of replicas record into the same buckets without losing an increment, and buckets expire on
//! their own once no window can reach them. The price: a summary's edges are bucket edges, and
//! it reports the exact span it covered (`from`, `to`).
//!
//! Event properties are validated (so the edge can refuse a malformed event) but not kept: no
//! RPC reads them, and the store has no bounded per-owner log to keep them in.
//!
//! # Layout
//! - [`config`]: listen addresses and store.
//! - [`validate`]: the rules for an event, and [`validate::OwnerId`], the only key material.
//! - [`bucket`]: bucket sizes, lifetimes and keys.
//! - [`window`]: the accepted summary windows and the buckets covering each.
//! - [`service`]: the `AnalyticsService` implementation.

pub mod bucket;
pub mod config;
pub mod service;
pub mod validate;
pub mod window;

pub use config::Config;
pub use service::AnalyticsApi;

use mesh_core::process::Shutdown;
use mesh_core::store::Store;
use mesh_proto::analytics::analytics_service_server::{AnalyticsServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;

/// Serves the analytics service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = Store::connect(&cfg.store).await?;
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "analytics service serving");
    let routes = tonic::service::Routes::new(AnalyticsServiceServer::new(AnalyticsApi::new(store)));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
