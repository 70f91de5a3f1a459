//! API key verification through the auth service, with a shared cache that doubles as the
//! last-known-good answer.
//!
//! Each verification is remembered in the store (Redis in deployments) keyed by the key's
//! SHA-256, so every gateway replica benefits and the secret itself is never stored. For
//! `api_key_cache_ttl` the remembered principal is trusted without asking auth; after that
//! auth is asked again, and only if auth is out ([`is_outage`]) is the older verification used
//! (up to `fallback_ttl`). A store error is a miss: the cache fails open. Deleting a key
//! through a gateway drops it at once, and auth refusing a key drops it too, so a revoked key
//! is never resurrected by an outage later.

use std::time::Duration;

use mesh_proto::auth::VerifyApiKeyRequest;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::clients::{Clients, grpc};
use crate::context::RequestId;
use crate::error::ApiError;
use crate::fallback::{LastKnownGood, is_outage};

#[derive(Clone, Debug)]
pub struct ApiKeyVerifier {
    lkg: LastKnownGood,
    /// How long a verification is trusted without asking auth.
    fresh_for: Duration,
}

fn principal_key(hash: &str) -> String {
    format!("apikey:{hash}")
}

fn id_key(id: &str) -> String {
    format!("apikey-id:{id}")
}

impl ApiKeyVerifier {
    pub fn new(lkg: LastKnownGood, fresh_for: Duration) -> Self {
        Self { lkg, fresh_for }
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
        let remembered = self.lkg.recall::<Principal>(&principal_key(&hash)).await;
        if let Some(snapshot) = &remembered
            && snapshot.age < self.fresh_for
        {
            return Ok(snapshot.value.clone());
        }
        let verified = clients
            .auth
            .clone()
            .verify_api_key(grpc(
                request_id,
                clients.deadlines().auth,
                VerifyApiKeyRequest { key: key.to_owned() },
            ))
            .await;
        let found = match verified {
            Ok(found) => found.into_inner(),
            Err(status) => {
                return match status.code() {
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                        if remembered.is_some() {
                            self.lkg.forget(&principal_key(&hash)).await;
                        }
                        Err(ApiError::unauthorized("invalid API key"))
                    }
                    _ if is_outage(&status) && remembered.is_some() => {
                        let snapshot = remembered.expect("checked");
                        metrics::counter!("gateway_authn_fallbacks_total", "credential" => "api_key")
                            .increment(1);
                        tracing::info!(code = ?status.code(), age_s = snapshot.age.as_secs(),
                            "auth unavailable; API key accepted from its last verification");
                        Ok(snapshot.value)
                    }
                    _ => Err(ApiError::from_status("auth", &status)),
                };
            }
        };
        let principal = Principal {
            user_id: found.user_id,
            email: found.email,
            roles: found.roles,
            session_id: None,
            api_key_id: Some(found.api_key_id.clone()),
        };
        self.lkg.remember(&principal_key(&hash), &principal).await;
        self.lkg.remember(&id_key(&found.api_key_id), &hash).await;
        Ok(principal)
    }

    /// Forgets a deleted key at once rather than when its entry expires.
    pub async fn invalidate(&self, key_id: &str) {
        let forgotten = match self.lkg.recall::<String>(&id_key(key_id)).await {
            Some(hash) => self.lkg.forget(&principal_key(&hash.value)).await,
            None => true,
        };
        if !(forgotten && self.lkg.forget(&id_key(key_id)).await) {
            tracing::warn!(key_id, "could not drop a deleted API key from the cache");
        }
    }
}
