//! The identity domain: `/v1/auth`, `/v1/users`, `/v1/quota`, `/.well-known/jwks.json`.

pub mod auth;
pub mod quota;
pub mod throttle;
pub mod users;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::authn::guarded;
use crate::state::AppState;

/// Identity routes; the authenticated ones are [`guarded`].
pub fn routes(state: &AppState) -> Router<AppState> {
    let public = Router::new()
        .route("/v1/auth/register", post(auth::register))
        .route("/v1/auth/login", post(auth::login))
        .route("/v1/auth/refresh", post(auth::refresh))
        .route("/.well-known/jwks.json", get(auth::jwks));
    let authenticated = Router::new()
        .route("/v1/auth/logout", guarded(state, post(auth::logout)))
        .route("/v1/auth/api-keys", guarded(state, post(auth::create_api_key).get(auth::list_api_keys)))
        .route("/v1/auth/api-keys/{id}", guarded(state, delete(auth::delete_api_key)))
        .route("/v1/users/me", guarded(state, get(users::get_me).patch(users::update_me)))
        .route("/v1/quota", guarded(state, get(quota::get_quota)));
    public.merge(authenticated)
}
