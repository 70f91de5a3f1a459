//! Who is calling: a JWT verified locally, or an API key verified by auth (and cached).
//!
//! [`authenticate`] is the middleware of every route that needs a principal: it resolves the
//! principal, meters the request against its quota, and adds the `RateLimit-*` headers. An
//! answer metered locally because the quota service was down is marked `x-mesh-fallback:
//! degraded` (unless the handler marked it already: its mark says more about the body).
//!
//! Revocation reaches every gateway within a second: a token's session is checked against the
//! revoked sessions auth marks in the store ([`revocations`], behind a local cache of 500 ms),
//! and a deleted API key's shared cache entry is dropped and tombstoned ([`ApiKeyVerifier`]).

mod api_keys;
mod jwks;
pub mod revocations;

pub use api_keys::ApiKeyVerifier;
pub use jwks::{Claims, JwksVerifier};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::context::{MESH_FALLBACK, RequestId};
use crate::error::ApiError;
use crate::quota;
use crate::state::AppState;

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

/// Resolves the principal, meters the request, and runs the handler.
pub async fn authenticate(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let request_id = req.extensions().get::<RequestId>().cloned().unwrap_or_else(|| RequestId("none".into()));
    let principal = resolve(&state, req.headers(), &request_id).await?;
    let metered = quota::consume(&state, &principal, &request_id).await;
    let status = &metered.status;
    let degraded = HeaderValue::from_static(crate::fallback::Fallback::Degraded.as_str());
    if !status.allowed {
        let mut err = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "quota-exceeded",
            "Quota exceeded",
            format!(
                "the {} plan allows {} requests per window; it resets at {}",
                status.plan, status.limit, status.reset_at
            ),
        )
        .with_retry_after(quota::seconds_until_reset(status));
        for (name, value) in quota::headers(status) {
            err = err.with_header(name, value);
        }
        if metered.local {
            err = err.with_header(header::HeaderName::from_static(MESH_FALLBACK), degraded);
        }
        return Err(err);
    }
    req.extensions_mut().insert(principal);
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.extend(quota::headers(status));
    if metered.local && !headers.contains_key(MESH_FALLBACK) {
        headers.insert(MESH_FALLBACK, degraded);
    }
    Ok(response)
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    request_id: &RequestId,
) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::unauthorized("use `Authorization: Bearer <token>`"))?;
        let claims = state.jwks.verify(token.trim(), request_id).await?;
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
        return state.api_keys.verify(key.trim(), &state.clients, request_id).await;
    }
    Err(ApiError::unauthorized("send `Authorization: Bearer <token>` or `X-Api-Key: <key>`"))
}
