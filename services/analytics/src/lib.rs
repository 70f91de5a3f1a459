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
//! Event properties are validated (so the edge can refuse a malformed event), bounded as a whole
//! (`max_properties_bytes` of JSON) and not counted; they reach live watchers through each
//! owner's capped, expiring log (see [`live`]). Everything stored per owner is bounded: buckets
//! expire ([`bucket::Granularity::ttl`]), the live log is capped in count and bytes and expires.
//!
//! # Layout
//! - [`config`]: listen addresses and store.
//! - [`validate`]: the rules for an event, and [`validate::OwnerId`], the only key material.
//! - [`bucket`]: bucket sizes, lifetimes and keys.
//! - [`window`]: the accepted summary windows and the buckets covering each.
//! - [`live`]: the per-owner live log and its watchers (`WatchEvents`).
//! - [`service`]: the `AnalyticsService` implementation.

pub mod bucket;
pub mod config;
pub mod live;
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
    // Live watches never end by themselves: end them when the drain starts, not at its timeout.
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let api = AnalyticsApi::new(store, &cfg, stop);
    let routes = tonic::service::Routes::new(AnalyticsServiceServer::new(api));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
