//! The identity domain: `/v1/auth`, `/v1/users`, `/v1/quota`, `/.well-known/jwks.json`.

pub mod auth;
pub mod quota;
pub mod throttle;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{delete, get, post};

use crate::authn::authenticate;
use crate::quota::meter;
use crate::state::AppState;

/// Identity routes; the authenticated ones pass through [`authenticate`], then [`meter`].
pub fn routes(state: &AppState) -> Router<AppState> {
    let public = Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/.well-known/jwks.json", get(auth::jwks));
    let authenticated = Router::new()
        .route("/v1/auth/logout", post(auth::logout))
        .route("/v1/auth/api-keys", post(auth::create_api_key).get(auth::list_api_keys))
        .route("/v1/auth/api-keys/{id}", delete(auth::delete_api_key))
        .route("/v1/users/me", get(users::get_me).patch(users::update_me))
        .route("/v1/quota", get(quota::get_quota))
        // Metering needs the principal, so it runs after authentication (the outer layer).
        .route_layer(from_fn_with_state(Arc::new(state.meter.clone()), meter))
        .route_layer(from_fn_with_state(Arc::new(state.authn.clone()), authenticate));
    public.merge(authenticated)
}
