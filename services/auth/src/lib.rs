//! The auth service: accounts with argon2id passwords, sessions whose access tokens are Ed25519
//! JWTs and whose refresh tokens rotate with reuse detection, and API keys stored as digests.
//!
//! Every piece of state is in the store, so any replica serves any request and replicas sharing
//! one Redis behave as one service: an email is claimed with `set_nx`, a refresh token is rotated
//! with one atomic `replace`, and even the generated development signing key is shared. Access
//! tokens are not stored at all: gateways verify them against the JWKS this service publishes.
//!
//! # Layout
//! - [`config`]: listen addresses, store, token lifetimes, signing keys, hashing cost and bound.
//! - [`hashing`]: the cost of one password hash and the bound on how many run at once.
//! - [`validate`]: the rules every request field passes before it is used.
//! - [`passwords`]: argon2id hashing, bounded in concurrency and wait.
//! - [`secrets`]: random secrets for clients and the digests stored in their place.
//! - [`keys`]: the signing keys, the shared development key, the JWK set.
//! - [`tokens`]: access token claims and signing.
//! - [`users`]: registration and login checks.
//! - [`sessions`]: sessions, refresh rotation, reuse detection, logout.
//! - [`api_keys`]: API key creation, listing, deletion and verification.
//! - [`service`]: the `AuthService` implementation tying them together.

pub mod api_keys;
pub mod config;
pub mod hashing;
pub mod keys;
pub mod passwords;
pub mod secrets;
pub mod service;
pub mod sessions;
pub mod tokens;
pub mod users;
pub mod validate;

pub use config::{Config, SigningKeyConfig};
pub use hashing::{HashingConfig, PasswordHashConfig};
pub use service::AuthApi;

use mesh_core::process::Shutdown;
use mesh_core::store::Store;
use mesh_proto::auth::auth_service_server::{AuthServiceServer, SERVICE_NAME};
use tokio::net::TcpListener;

use crate::api_keys::ApiKeys;
use crate::keys::KeySet;
use crate::passwords::Passwords;
use crate::sessions::Sessions;
use crate::tokens::AccessTokens;
use crate::users::Accounts;

/// Serves the auth service on `listener` until `shutdown` resolves.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    cfg.validate()?;
    let store = Store::connect(&cfg.store).await?;
    let keys = KeySet::load(&cfg.signing_keys, &store).await?;
    let passwords = Passwords::new(cfg.password_hash, &cfg.hashing).await?;
    let tokens = AccessTokens::new(keys, cfg.issuer.clone(), cfg.audience.clone(), cfg.access_ttl);
    let api = AuthApi::new(
        Accounts::new(store.clone(), passwords, &cfg.admin_emails),
        Sessions::new(store.clone(), tokens, cfg.refresh_ttl),
        ApiKeys::new(store.clone(), cfg.max_api_keys_per_user),
    );
    tracing::info!(addr = %listener.local_addr()?, backend = store.backend(), "auth service serving");
    let routes = tonic::service::Routes::new(AuthServiceServer::new(api));
    mesh_core::grpc::serve(listener, routes, &[SERVICE_NAME], &cfg.server, shutdown).await?;
    Ok(())
}
