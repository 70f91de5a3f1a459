//! `/v1/users/me`.
//!
//! Every profile read or written is remembered per user; when the user service is out, `GET`
//! answers the user's own last known profile marked `x-mesh-fallback: cache`. `PATCH` cannot be
//! served from anything: 503.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::Response;
use mesh_proto::user as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::error::ApiError;
use crate::fallback::{self, Fallback};
use crate::json::ValidJson;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
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

/// The last-known-good key of a user's profile: the user's own, never another's.
fn snapshot_key(user_id: &str) -> String {
    format!("users/me:{user_id}")
}

/// Only the fields present change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileBody {
    pub display_name: Option<String>,
    pub bio: Option<String>,
}

#[utoipa::path(get, path = "/v1/users/me", tag = "users",
    responses((status = 200, body = Profile, description = "the profile; `x-mesh-fallback: cache` with `Age` when the user service is out"),
        (status = 503, description = "the user service is out and no profile of yours is remembered")))]
pub async fn get_me(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, ApiError> {
    let key = snapshot_key(&principal.user_id);
    let request = pb::GetProfileRequest { user_id: principal.user_id.clone() };
    let failure = match state.users.get_profile(request).await {
        Ok(profile) => return Ok(fallback::live(&state.lkg, &key, &Profile::from(profile)).await),
        // Registration creates the profile; if that call failed, create it now from the token.
        Err(failure) if failure.status.code() == tonic::Code::NotFound => {
            let display_name = principal.email.split('@').next().unwrap_or("user").chars().take(64).collect();
            let request =
                pb::CreateProfileRequest { user_id: principal.user_id, email: principal.email, display_name };
            match state.users.create_profile(request).await {
                Ok(profile) => return Ok(fallback::live(&state.lkg, &key, &Profile::from(profile)).await),
                Err(failure) => failure,
            }
        }
        Err(failure) => failure,
    };
    fallback::after_failure(&state.lkg, &key, Fallback::Cache, failure.service, &failure.status).await
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", request_body = UpdateProfileBody,
    responses((status = 200, body = Profile), (status = 400, description = "invalid field")))]
pub async fn update_me(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidJson(body): ValidJson<UpdateProfileBody>,
) -> Result<Json<Profile>, ApiError> {
    let key = snapshot_key(&principal.user_id);
    let request = pb::UpdateProfileRequest {
        user_id: principal.user_id,
        display_name: body.display_name,
        bio: body.bio,
    };
    let profile = Profile::from(state.users.update_profile(request).await?);
    // So an outage right after an update does not answer the profile as it was before it.
    state.lkg.remember(&key, &profile).await;
    Ok(Json(profile))
}
