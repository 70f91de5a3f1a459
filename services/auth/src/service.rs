//! `mesh.auth.v1.AuthService`: each RPC is a call into the part that owns it.

use mesh_core::ServiceError;
use mesh_proto::auth::auth_service_server::AuthService;
use mesh_proto::auth::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, DeleteApiKeyRequest, DeleteApiKeyResponse,
    GetJwksRequest, Jwks, ListApiKeysRequest, ListApiKeysResponse, LoginRequest, LogoutRequest,
    LogoutResponse, Principal, RefreshRequest, RegisterRequest, RegisterResponse, TokenPair,
    VerifyApiKeyRequest,
};
use tonic::{Request, Response, Status};

use crate::api_keys::ApiKeys;
use crate::sessions::Sessions;
use crate::users::Accounts;
use crate::validate;

/// The auth service: accounts, sessions and API keys over one store.
#[derive(Debug)]
pub struct AuthApi {
    accounts: Accounts,
    sessions: Sessions,
    api_keys: ApiKeys,
}

// === impl AuthApi ===

impl AuthApi {
    pub fn new(accounts: Accounts, sessions: Sessions, api_keys: ApiKeys) -> Self {
        Self { accounts, sessions, api_keys }
    }

    async fn create_api_key(&self, req: CreateApiKeyRequest) -> Result<CreateApiKeyResponse, ServiceError> {
        // A bad name is INVALID_ARGUMENT whether or not the user exists, so check it first.
        validate::label("name", &req.name)?;
        if self.accounts.get(&req.user_id).await?.is_none() {
            return Err(ServiceError::not_found("user not found"));
        }
        let (record, key) = self.api_keys.create(&req.user_id, &req.name).await?;
        Ok(CreateApiKeyResponse { id: record.id, key, name: record.name, created_at: record.created_at })
    }

    async fn list_api_keys(&self, req: ListApiKeysRequest) -> Result<ListApiKeysResponse, ServiceError> {
        let page = self.api_keys.list(&req.user_id, req.limit, &req.cursor).await?;
        let keys = page
            .keys
            .into_iter()
            .map(|k| ApiKey { id: k.id, name: k.name, prefix: k.prefix, created_at: k.created_at })
            .collect();
        Ok(ListApiKeysResponse { keys, next_cursor: page.next_cursor })
    }

    async fn verify_api_key(&self, req: VerifyApiKeyRequest) -> Result<Principal, ServiceError> {
        let record = self.api_keys.verify(&req.key).await?;
        // A key outliving its user (no user deletion exists yet) authenticates no one.
        let Some(user) = self.accounts.get(&record.user_id).await? else {
            return Err(ServiceError::Unauthenticated("invalid API key".into()));
        };
        Ok(Principal {
            user_id: user.id,
            email: user.email,
            roles: user.roles,
            session_id: String::new(),
            api_key_id: record.id,
        })
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let req = request.into_inner();
        let user = self.accounts.register(&req.email, &req.password, &req.display_name).await?;
        Ok(Response::new(RegisterResponse { user_id: user.id, roles: user.roles }))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        let req = request.into_inner();
        let user = self.accounts.authenticate(&req.email, &req.password).await?;
        Ok(Response::new(self.sessions.open(&user).await?))
    }

    async fn refresh(&self, request: Request<RefreshRequest>) -> Result<Response<TokenPair>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.sessions.refresh(&req.refresh_token, &self.accounts).await?))
    }

    async fn logout(&self, request: Request<LogoutRequest>) -> Result<Response<LogoutResponse>, Status> {
        let req = request.into_inner();
        self.sessions.revoke(&req.user_id, &req.session_id).await?;
        Ok(Response::new(LogoutResponse {}))
    }

    async fn create_api_key(
        &self,
        request: Request<CreateApiKeyRequest>,
    ) -> Result<Response<CreateApiKeyResponse>, Status> {
        Ok(Response::new(AuthApi::create_api_key(self, request.into_inner()).await?))
    }

    async fn list_api_keys(
        &self,
        request: Request<ListApiKeysRequest>,
    ) -> Result<Response<ListApiKeysResponse>, Status> {
        Ok(Response::new(AuthApi::list_api_keys(self, request.into_inner()).await?))
    }

    async fn delete_api_key(
        &self,
        request: Request<DeleteApiKeyRequest>,
    ) -> Result<Response<DeleteApiKeyResponse>, Status> {
        let req = request.into_inner();
        self.api_keys.delete(&req.user_id, &req.id).await?;
        Ok(Response::new(DeleteApiKeyResponse {}))
    }

    async fn verify_api_key(
        &self,
        request: Request<VerifyApiKeyRequest>,
    ) -> Result<Response<Principal>, Status> {
        Ok(Response::new(AuthApi::verify_api_key(self, request.into_inner()).await?))
    }

    async fn get_jwks(&self, _request: Request<GetJwksRequest>) -> Result<Response<Jwks>, Status> {
        Ok(Response::new(self.sessions.jwks()))
    }
}
