//! Who is calling: a JWT verified locally, or an API key verified by auth (and cached).
//!
//! [`authenticate`] is the first step of every route that needs a principal: it resolves the
//! principal and hands it on as a request extension. Metering is the next step, apart
//! ([`crate::quota::meter`]).
//!
//! Revocation reaches every gateway within a second: a token's session is checked against the
//! revoked sessions auth marks in the store ([`revocations`], behind a local cache of 500 ms),
//! and a deleted API key's shared cache entry is dropped and tombstoned ([`ApiKeyVerifier`]).

mod api_keys;
mod jwks;
pub mod revocations;
mod verified;

pub use api_keys::ApiKeyVerifier;
pub use jwks::{Claims, JwksVerifier};

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::clients::Auth;
use crate::context::RequestId;
use crate::error::ApiError;

pub use mesh_core::headers::API_KEY;

/// The authenticated subject of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: String,
    pub email: String,
    pub roles: Vec<String>,
    /// Set for token logins: the session a logout revokes.
    pub session_id: Option<String>,
    /// Set for API key logins.
    pub api_key_id: Option<String>,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == "admin")
    }
}

/// What authentication needs: the verifiers. The state of the [`authenticate`] step.
#[derive(Clone, Debug)]
pub struct Authenticator {
    pub jwks: Arc<JwksVerifier>,
    pub api_keys: ApiKeyVerifier,
    /// Verifies API keys the shared cache does not answer for.
    auth: Auth,
}

// === impl Authenticator ===

impl Authenticator {
    pub fn new(jwks: Arc<JwksVerifier>, api_keys: ApiKeyVerifier, auth: Auth) -> Self {
        Self { jwks, api_keys, auth }
    }

    /// The principal the request's credentials name, or a 401 saying what is wrong.
    async fn resolve(&self, headers: &HeaderMap, request_id: &RequestId) -> Result<Principal, ApiError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| ApiError::unauthorized("use `Authorization: Bearer <token>`"))?;
            let claims = self.jwks.verify(token.trim(), request_id).await?;
            return Ok(Principal {
                user_id: claims.sub,
                email: claims.email,
                roles: claims.roles,
                session_id: Some(claims.sid),
                api_key_id: None,
            });
        }
        if let Some(value) = headers.get(API_KEY) {
            let key = value.to_str().map_err(|_| ApiError::unauthorized("invalid API key"))?;
            return self.api_keys.verify(key.trim(), &self.auth, request_id).await;
        }
        Err(ApiError::unauthorized("send `Authorization: Bearer <token>` or `X-Api-Key: <key>`"))
    }
}

/// Resolves the principal and runs the rest with it as an extension; metering is the next
/// step ([`crate::quota::meter`]).
pub async fn authenticate(
    State(authn): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let request_id = req.extensions().get::<RequestId>().cloned().unwrap_or_else(|| RequestId("none".into()));
    let principal = authn.resolve(req.headers(), &request_id).await?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

/// The methods of a route behind [`authenticate`], then metering ([`crate::quota::meter`]).
/// Layered on the method router, not the path: a method the path does not have is answered
/// 405 (with `Allow`) before anyone is asked for credentials or charged for it.
pub fn guarded(
    state: &crate::state::AppState,
    methods: axum::routing::MethodRouter<crate::state::AppState>,
) -> axum::routing::MethodRouter<crate::state::AppState> {
    use axum::middleware::from_fn_with_state;
    methods
        .route_layer(from_fn_with_state(Arc::new(state.meter.clone()), crate::quota::meter))
        .route_layer(from_fn_with_state(Arc::new(state.authn.clone()), authenticate))
}
