//! API key verification through the auth service, with a short-lived shared cache.
//!
//! The cache lives in the store (Redis in deployments) keyed by the key's SHA-256, so every
//! gateway replica benefits and the secret itself is never stored. A store error is a miss:
//! the cache fails open. Deleting a key through a gateway drops its cache entry at once.

use std::time::Duration;

use mesh_core::store::Store;
use mesh_proto::auth::VerifyApiKeyRequest;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::clients::{Clients, grpc};
use crate::context::RequestId;
use crate::error::ApiError;

#[derive(Clone, Debug)]
pub struct ApiKeyVerifier {
    store: Store,
    ttl: Duration,
}

fn cache_key(hash: &str) -> String {
    format!("gw:apikey:{hash}")
}

fn id_key(id: &str) -> String {
    format!("gw:apikey-id:{id}")
}

impl ApiKeyVerifier {
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    pub async fn verify(
        &self,
        key: &str,
        clients: &Clients,
        request_id: &RequestId,
    ) -> Result<Principal, ApiError> {
        if !(8..=256).contains(&key.len()) || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        match self.store.get_json::<Principal>(&cache_key(&hash)).await {
            Ok(Some(principal)) => return Ok(principal),
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "API key cache unavailable; asking auth"),
        }
        let found = clients
            .auth
            .clone()
            .verify_api_key(grpc(
                request_id,
                clients.deadlines().auth,
                VerifyApiKeyRequest { key: key.to_owned() },
            ))
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                    ApiError::unauthorized("invalid API key")
                }
                _ => ApiError::from_status("auth", &s),
            })?
            .into_inner();
        let principal = Principal {
            user_id: found.user_id,
            email: found.email,
            roles: found.roles,
            session_id: None,
            api_key_id: Some(found.api_key_id.clone()),
        };
        let cached = async {
            self.store.set_json(&cache_key(&hash), &principal, Some(self.ttl)).await?;
            self.store.set(&id_key(&found.api_key_id), &hash, Some(self.ttl)).await
        };
        if let Err(e) = cached.await {
            tracing::warn!(error = %e, "could not cache an API key verification");
        }
        Ok(principal)
    }

    /// Forgets a deleted key at once rather than when its cache entry expires.
    pub async fn invalidate(&self, key_id: &str) {
        let dropped = async {
            if let Some(hash) = self.store.get(&id_key(key_id)).await? {
                self.store.delete(&cache_key(&hash)).await?;
            }
            self.store.delete(&id_key(key_id)).await
        };
        if let Err(e) = dropped.await {
            tracing::warn!(error = %e, key_id, "could not drop a deleted API key from the cache");
        }
    }
}
