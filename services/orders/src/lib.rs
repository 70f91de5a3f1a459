//! The orders service: orders of articles, created idempotently per owner and Idempotency-Key,
//! and listed per owner newest first. Stock is reserved through the articles service.
//!
//! Creating an order is a chain of steps that are each idempotent, so a request that failed half
//! way (a timeout, a replica killed) is finished by repeating it with the same key, on any
//! replica: claim the key (`set_nx`, which also fixes the order id), reserve stock on articles
//! with the order id as reservation id, store the order under its id (`set_nx`), index it under
//! its owner. Concurrent requests with one key meet at the same claim and produce one order.
//!
//! Orders a gateway accepted while no replica answered wait in a store stream; every replica
//! drains it through the same idempotent path ([`queue`]), so each key still makes one order.
//!
//! # Layout
//! - [`config`]: listen addresses, store, the articles client, how long keys are remembered.
//! - [`service`]: the `OrdersService` implementation; its methods live in the files below.
//! - `create`: idempotent order creation.
//! - `read`: get and list an owner's orders.
//! - `articles`: the articles client: reservation with retry of ABORTED, status mapping.
//! - `request`: checks on a create request and its fingerprint.
//! - `model`: store keys and the records kept under them.
//! - [`events`]: each order's log of status events, and `WatchOrder` over it.
//! - [`queue`]: the consumer of the order queue, its entry format and why it is exactly once.

pub mod config;
pub mod events;
pub mod queue;
pub mod service;

mod articles;
mod create;
mod model;
mod read;
mod request;

pub use config::{Config, QueueConfig};
pub use service::OrdersApi;

use std::sync::Arc;

use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use mesh_core::store::Store;
use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
use mesh_proto::orders::orders_service_server::{OrdersServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;

use crate::articles::Articles;

/// Serves the orders service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let store = Store::connect(&cfg.store).await?;
    // Lazy and balanced over every articles replica: articles being down at start does not stop
    // orders from starting, and calls go to whichever replicas are up.
    let channel = mesh_core::client::balanced_channel(&cfg.articles)?;
    let articles = Articles::new(ArticlesServiceClient::new(channel), cfg.articles.request_timeout);
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "orders service serving");
    // One drain for the server, the queue consumer and order watches: all stop on the same
    // signal. Server and consumer run in this future (not spawned), so aborting it ends the
    // consumer too, as a crash would.
    let drain = Drain::new();
    let api = Arc::new(OrdersApi::new(cfg.clone(), store, articles, drain.clone()));
    let consumer = async {
        if cfg.queue.enabled {
            queue::Consumer::new(api.clone(), cfg.queue.clone()).run(drain.clone()).await;
        }
    };
    let routes = tonic::service::Routes::new(OrdersServiceServer::from_arc(api.clone()));
    let server = async {
        let served =
            mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, drain.signaled()).await;
        // The server can also end on its own (an error): the consumer must not outlive it.
        drain.trigger();
        served
    };
    let work = async {
        // The consumer finishes the entry in hand, which the articles deadline bounds.
        let (served, ()) = tokio::join!(server, consumer);
        served
    };
    tokio::pin!(work);
    let served = tokio::select! {
        served = &mut work => served,
        () = shutdown => {
            drain.trigger();
            work.await
        }
    };
    served?;
    Ok(())
}
