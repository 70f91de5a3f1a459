//! `mesh.auth.v1.AuthService`: each RPC is a call into the part that owns it.

use mesh_core::ServiceError;
use mesh_proto::auth::auth_service_server::AuthService;
use mesh_proto::auth::{
    ApiKey, CreateApiKeyRequest, CreateApiKeyResponse, DeleteApiKeyRequest, DeleteApiKeyResponse,
    GetJwksRequest, Jwks, ListApiKeysRequest, ListApiKeysResponse, LoginRequest, LogoutRequest,
    LogoutResponse, Principal, RefreshRequest, RegisterRequest, RegisterResponse, TokenPair,
    VerifyApiKeyRequest,
};
use std::time::{Duration, Instant};

use tonic::{Request, Response, Status};

use crate::api_keys::ApiKeys;
use crate::sessions::Sessions;
use crate::users::Accounts;
use crate::validate;

/// When the caller stops waiting: now plus its `grpc-timeout` (`<1..8 digits><H|M|S|m|u|n>`),
/// read when the call arrives. `None` when it sent none (or garbage: tonic's own deadline then
/// still bounds the call).
fn deadline<T>(request: &Request<T>) -> Option<Instant> {
    let value = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let timeout = match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    };
    Instant::now().checked_add(timeout)
}

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
        let deadline = deadline(&request);
        let req = request.into_inner();
        let user = self.accounts.register(&req.email, &req.password, &req.display_name, deadline).await?;
        Ok(Response::new(RegisterResponse { user_id: user.id, roles: user.roles }))
    }

    async fn login(&self, request: Request<LoginRequest>) -> Result<Response<TokenPair>, Status> {
        let deadline = deadline(&request);
        let req = request.into_inner();
        let user = self.accounts.authenticate(&req.email, &req.password, deadline).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_read_from_grpc_timeout() {
        let with = |value: &str| {
            let mut request = Request::new(());
            request.metadata_mut().insert("grpc-timeout", value.parse().unwrap());
            deadline(&request).map(|d| d.saturating_duration_since(Instant::now()))
        };
        let near = |got: Option<Duration>, want: Duration| {
            got.is_some_and(|got| got <= want && want - got < Duration::from_secs(1))
        };
        assert!(near(with("250m"), Duration::from_millis(250)));
        assert!(near(with("5S"), Duration::from_secs(5)));
        assert!(near(with("2M"), Duration::from_secs(120)));
        assert!(near(with("1H"), Duration::from_secs(3600)));
        assert!(near(with("900000u"), Duration::from_millis(900)));
        for garbage in ["", "m", "123456789m", "10x", "-1S", "1.5S"] {
            assert_eq!(with(garbage), None, "{garbage:?}");
        }
        assert_eq!(deadline(&Request::new(())), None);
    }
}
