//! `/v1/auth/*` and the JWKS.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use mesh_proto::auth as pb;
use mesh_proto::user::CreateProfileRequest;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::identity::throttle::{ClientAddr, Throttle};
use crate::json::{ValidJson, ValidQuery};
use crate::page::{PageParams, next_cursor};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub email: String,
    pub password: String,
    pub display_name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Registered {
    pub user_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl From<pb::TokenPair> for TokenPair {
    fn from(p: pb::TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: p.token_type,
            expires_in: p.expires_in,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyBody {
    /// A label for people.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    pub id: String,
    /// The secret; shown this once.
    pub key: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the secret.
    pub prefix: String,
    pub created_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub keys: Vec<ApiKey>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, body = Registered), (status = 400, description = "invalid field"), (status = 409, description = "email taken"),
        (status = 429, description = "too many registrations from this address")))]
pub async fn register(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ValidJson(body): ValidJson<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    Throttle::of(&state).register(client).await?;
    let request = pb::RegisterRequest {
        email: body.email.clone(),
        password: body.password,
        display_name: body.display_name.clone(),
    };
    let registered = state.auth.register(request).await?;
    let profile = CreateProfileRequest {
        user_id: registered.user_id.clone(),
        email: body.email.trim().to_lowercase(),
        display_name: body.display_name,
    };
    // The account exists now; a missing profile is recreated on the first `GET /v1/users/me`.
    if let Err(failure) = state.users.create_profile(profile).await {
        let code = failure.status.code();
        tracing::warn!(?code, user_id = %registered.user_id, "profile not created at registration");
    }
    Ok((StatusCode::CREATED, Json(Registered { user_id: registered.user_id })))
}

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid email or password"),
        (status = 429, description = "too many failed logins for this account or address")))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ValidJson(body): ValidJson<LoginBody>,
) -> Result<Json<TokenPair>, ApiError> {
    let attempt = Throttle::of(&state).begin_login(&body.email, client).await?;
    let request = pb::LoginRequest { email: body.email, password: body.password };
    let answer = state.auth.login(request).await;
    // Only a verdict on the password moves the counts; the answer waits for them, so the next
    // guess already meets the lock this one earned.
    match &answer {
        Ok(_) => attempt.succeeded().await,
        Err(failure) if failure.status.code() == tonic::Code::Unauthenticated => attempt.failed().await,
        Err(_) => attempt.void().await,
    }
    Ok(Json(answer?.into()))
}

/// Refuses an API key where only a person's session may act: a leaked key must not be able to
/// mint more keys (persistence) or delete the others (locking the owner out of their tooling).
fn session_required(principal: &Principal, action: &str) -> Result<(), ApiError> {
    match principal.api_key_id {
        Some(_) => Err(ApiError::forbidden(format!(
            "an API key cannot {action} API keys; use a session's access token (`Authorization: Bearer`)"
        ))),
        None => Ok(()),
    }
}

#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = TokenPair), (status = 401, description = "unknown, reused or revoked refresh token")))]
pub async fn refresh(
    State(state): State<AppState>,
    ValidJson(body): ValidJson<RefreshBody>,
) -> Result<Json<TokenPair>, ApiError> {
    let request = pb::RefreshRequest { refresh_token: body.refresh_token };
    let pair = state.auth.refresh(request).await?;
    Ok(Json(pair.into()))
}

#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "session revoked (also when it already was)"),
        (status = 400, description = "not a session token")))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<StatusCode, ApiError> {
    let session_id = principal
        .session_id
        .ok_or_else(|| ApiError::bad_request("logout needs a session's access token, not an API key"))?;
    let request = pb::LogoutRequest { user_id: principal.user_id, session_id };
    match state.auth.logout(request).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        // Already logged out (the revocation has not reached this gateway's cache yet): the
        // session is gone either way, so a repeated logout is done, not "session not found".
        Err(failure) if failure.status.code() == tonic::Code::NotFound => Ok(StatusCode::NO_CONTENT),
        Err(failure) => Err(failure.into()),
    }
}

#[utoipa::path(post, path = "/v1/auth/api-keys", tag = "auth", request_body = CreateApiKeyBody,
    responses((status = 201, body = CreatedApiKey), (status = 403, description = "called with an API key, not a session token")))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidJson(body): ValidJson<CreateApiKeyBody>,
) -> Result<impl IntoResponse, ApiError> {
    session_required(&principal, "create")?;
    let request = pb::CreateApiKeyRequest { user_id: principal.user_id, name: body.name };
    let created = state.auth.create_api_key(request).await?;
    let body = CreatedApiKey {
        id: created.id,
        key: created.key,
        name: created.name,
        created_at: created.created_at,
    };
    Ok((StatusCode::CREATED, Json(body)))
}

#[utoipa::path(get, path = "/v1/auth/api-keys", tag = "auth", params(PageParams),
    responses((status = 200, body = ApiKeyPage)))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<ApiKeyPage>, ApiError> {
    let request = pb::ListApiKeysRequest {
        user_id: principal.user_id,
        limit: page.limit.unwrap_or(0),
        cursor: page.cursor.unwrap_or_default(),
    };
    let listed = state.auth.list_api_keys(request).await?;
    let keys = listed
        .keys
        .into_iter()
        .map(|k| ApiKey { id: k.id, name: k.name, prefix: k.prefix, created_at: k.created_at })
        .collect();
    Ok(Json(ApiKeyPage { keys, next_cursor: next_cursor(listed.next_cursor) }))
}

#[utoipa::path(delete, path = "/v1/auth/api-keys/{id}", tag = "auth",
    params(("id" = String, Path, description = "API key id")),
    responses((status = 204, description = "deleted"), (status = 403, description = "called with an API key, not a session token"),
        (status = 404, description = "no such key of yours")))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    session_required(&principal, "delete")?;
    let request = pb::DeleteApiKeyRequest { user_id: principal.user_id, id: id.clone() };
    state.auth.delete_api_key(request).await?;
    state.authn.api_keys.invalidate(&id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "the public keys that verify access tokens")))]
pub async fn jwks(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
) -> Result<impl IntoResponse, ApiError> {
    let document = state.authn.jwks.document(&rid).await?;
    let mut response =
        ([(axum::http::header::CACHE_CONTROL, "public, max-age=300")], Json(document)).into_response();
    if let Some(age) = state.authn.jwks.snapshot_age() {
        crate::fallback::mark(response.headers_mut(), crate::fallback::Fallback::Cache, Some(age));
    }
    Ok(response)
}
