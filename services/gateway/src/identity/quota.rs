//! `/v1/quota`.
//!
//! Every status read is remembered per principal (it also seeds the gateway's local limit when
//! the quota service is down); during an outage the principal's own last known status answers,
//! marked `x-mesh-fallback: cache`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use mesh_proto::quota::GetQuotaRequest;
use serde::Serialize;
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::error::ApiError;
use crate::fallback::{self, Fallback, is_outage};
use crate::quota::{KnownQuota, known_key};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Quota {
    pub plan: String,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// Unix seconds when the window resets.
    pub reset_at: i64,
}

impl From<KnownQuota> for Quota {
    fn from(k: KnownQuota) -> Self {
        Self { plan: k.plan, limit: k.limit, used: k.used, remaining: k.remaining, reset_at: k.reset_at }
    }
}

#[utoipa::path(get, path = "/v1/quota", tag = "quota",
    responses((status = 200, body = Quota, description = "the window; `x-mesh-fallback: cache` with `Age` when the quota service is out"),
        (status = 503, description = "the quota service is out and no status of yours is remembered")))]
pub async fn get_quota(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let key = known_key(&principal.user_id);
    let request = GetQuotaRequest { principal: principal.user_id };
    match state.quota.get_quota(request).await {
        Ok(status) => {
            let known = KnownQuota::from(status);
            state.lkg.remember_live(&key, &known).await;
            Ok(Json(Quota::from(known)).into_response())
        }
        Err(failure) => {
            let outage = is_outage(&failure.status);
            let error = ApiError::from(failure);
            if !outage {
                return Err(error);
            }
            let upstream = error.status;
            let snapshot = state.lkg.recall::<KnownQuota>(&key).await.ok_or(error)?;
            let body = serde_json::to_value(Quota::from(snapshot.value)).unwrap_or_default();
            Ok(fallback::stale_response(body, Fallback::Cache, snapshot.age, upstream))
        }
    }
}
