//! The user service: the profile of each registered user (display name, bio), created once when
//! auth registers the user and edited field by field afterwards.
//!
//! Identity is not kept here: the email is copied from registration for display and never
//! changes through this service (auth owns credentials). Every profile lives in the store, so any
//! replica serves any user, and the layout of a profile in the store is chosen so that replicas
//! editing different fields of one profile at the same time cannot lose each other's change
//! (see [`profile`]).
//!
//! # Layout
//! - [`config`]: listen addresses and store.
//! - [`validate`]: the rules for every input field, and [`validate::UserId`], the only key material.
//! - [`profile`]: how a profile is laid out in the store, and reading it back.
//! - [`service`]: the `UserService` implementation.

pub mod config;
pub mod profile;
pub mod service;
pub mod validate;

pub use config::Config;
pub use service::UserApi;

use mesh_core::process::Shutdown;
use mesh_core::store::Store;
use mesh_proto::user::user_service_server::{SERVICE_NAME, UserServiceServer};
use tokio::net::TcpListener;

/// Serves the user service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let store = Store::connect(&cfg.store).await?;
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "user service serving");
    let routes = tonic::service::Routes::new(UserServiceServer::new(UserApi::new(store)));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
