//! `/v1/quota`.

use axum::Json;
use axum::extract::{Extension, State};
use mesh_proto::quota::GetQuotaRequest;
use serde::Serialize;
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::error::ApiError;
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

#[utoipa::path(get, path = "/v1/quota", tag = "quota", responses((status = 200, body = Quota)))]
pub async fn get_quota(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Quota>, ApiError> {
    let request = GetQuotaRequest { principal: principal.user_id };
    let status = state
        .clients
        .quota
        .clone()
        .get_quota(grpc(&rid, state.clients.deadlines().quota, request))
        .await
        .map_err(|s| ApiError::from_status("quota", &s))?
        .into_inner();
    Ok(Json(Quota {
        plan: status.plan,
        limit: status.limit,
        used: status.used,
        remaining: status.remaining,
        reset_at: status.reset_at,
    }))
}
