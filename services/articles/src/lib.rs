//! The articles service: the catalogue (articles with a title, body and price), a word search over
//! it, and the stock that orders reserve and release, shared by every replica through the store.
//!
//! An article's stock is its own integer key, apart from the article record, so that taking stock
//! is one atomic `add_bounded` on the store: concurrent reservations on any number of replicas can
//! never take more than there is. A reservation takes stock for all its lines or for none, and is
//! idempotent by its id, so a caller (the orders service) may repeat it after a timeout or a crash.
//!
//! # Layout
//! - [`config`]: listen addresses, store, reservation timeout, search scan bound.
//! - [`service`]: the `ArticlesService` implementation; its methods live in the files below.
//! - `catalog`: create, get and list (search) articles.
//! - `stock`: reserve and release stock.
//! - `model`: store keys and the records kept under them.
//! - `validate`: checks on requests, each error naming its field.
//! - `search`: the word query and how an article matches it.

pub mod config;
pub mod service;

mod catalog;
mod model;
mod search;
mod stock;
mod validate;

pub use config::Config;
pub use service::ArticlesApi;

use mesh_core::process::Shutdown;
use mesh_core::store::Store;
use mesh_proto::articles::articles_service_server::{ArticlesServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;

/// Serves the articles service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let store = Store::connect(&cfg.store).await?;
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "articles service serving");
    let routes =
        tonic::service::Routes::new(ArticlesServiceServer::new(ArticlesApi::new(cfg.clone(), store)));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
