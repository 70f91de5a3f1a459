//! `/v1/users/me`.

use axum::Json;
use axum::extract::{Extension, State};
use mesh_proto::user as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::json::ValidJson;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    pub bio: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<pb::Profile> for Profile {
    fn from(p: pb::Profile) -> Self {
        Self {
            user_id: p.user_id,
            email: p.email,
            display_name: p.display_name,
            bio: p.bio,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// Only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileBody {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

#[utoipa::path(get, path = "/v1/users/me", tag = "users", responses((status = 200, body = Profile)))]
pub async fn get_me(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Profile>, ApiError> {
    let deadline = state.clients.deadlines().user;
    let mut user = state.clients.user.clone();
    let request = pb::GetProfileRequest { user_id: principal.user_id.clone() };
    match user.get_profile(grpc(&rid, deadline, request)).await {
        Ok(profile) => Ok(Json(profile.into_inner().into())),
        // Registration creates the profile; if that call failed, create it now from the token.
        Err(status) if status.code() == tonic::Code::NotFound => {
            let display_name = principal.email.split('@').next().unwrap_or("user").chars().take(64).collect();
            let request =
                pb::CreateProfileRequest { user_id: principal.user_id, email: principal.email, display_name };
            let profile = user
                .create_profile(grpc(&rid, deadline, request))
                .await
                .map_err(|s| ApiError::from_status("user", &s))?;
            Ok(Json(profile.into_inner().into()))
        }
        Err(status) => Err(ApiError::from_status("user", &status)),
    }
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = UpdateProfileBody,
    responses((status = 200, body = Profile), (status = 400, description = "invalid field")))]
pub async fn update_me(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    ValidJson(body): ValidJson<UpdateProfileBody>,
) -> Result<Json<Profile>, ApiError> {
    let request = pb::UpdateProfileRequest {
        user_id: principal.user_id,
        display_name: body.display_name,
        bio: body.bio,
    };
    let profile = state
        .clients
        .user
        .clone()
        .update_profile(grpc(&rid, state.clients.deadlines().user, request))
        .await
        .map_err(|s| ApiError::from_status("user", &s))?;
    Ok(Json(profile.into_inner().into()))
}
