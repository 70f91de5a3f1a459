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
//!
//! There is no cache in this process: every gateway reads the one entry in the shared store, so
//! a dropped entry is gone for all of them at once. What could bring a deleted key back is a
//! verification racing the deletion: auth said yes just before the key was deleted, and the
//! answer is written after the deletion dropped the entry. So each side writes, then reads what
//! the other writes (Dekker's handshake): a deletion first writes a tombstone for the key id
//! (`apikey-deleted:{id}`, kept as long as any snapshot) and then drops the entry it finds
//! through `apikey-id:{id}`; a verification first writes the entry and `apikey-id:{id}`, then
//! reads the tombstone and drops its own entry if it finds one. Whichever order they run in,
//! one of them sees the other, and no entry of a deleted key survives. The hot path (a fresh
//! entry) stays one store read; the extra read is paid once per verification with auth.

use std::time::Duration;

use mesh_proto::auth::VerifyApiKeyRequest;
use sha2::{Digest, Sha256};

use super::Principal;
use crate::clients::Auth;
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

fn tombstone_key(id: &str) -> String {
    format!("apikey-deleted:{id}")
}

fn refused_as_deleted(key_id: &str, request_id: &RequestId) -> ApiError {
    metrics::counter!("gateway_authn_revoked_total", "credential" => "api_key").increment(1);
    tracing::info!(request_id = request_id.as_str(), api_key_id = key_id, "API key refused: it was deleted");
    ApiError::unauthorized("invalid API key")
}

impl ApiKeyVerifier {
    pub fn new(lkg: LastKnownGood, fresh_for: Duration) -> Self {
        Self { lkg, fresh_for }
    }

    pub async fn verify(
        &self,
        key: &str,
        auth: &Auth,
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
        let verified = auth.verify_api_key(VerifyApiKeyRequest { key: key.to_owned() }).await;
        let found = match verified {
            Ok(found) => found,
            Err(failure) => {
                let status = &failure.status;
                return match status.code() {
                    tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                        if remembered.is_some() {
                            self.lkg.forget(&principal_key(&hash)).await;
                        }
                        Err(ApiError::unauthorized("invalid API key"))
                    }
                    _ if is_outage(status) && remembered.is_some() => {
                        let snapshot = remembered.expect("checked");
                        metrics::counter!("gateway_authn_fallbacks_total", "credential" => "api_key")
                            .increment(1);
                        tracing::info!(code = ?status.code(), age_s = snapshot.age.as_secs(),
                            "auth unavailable; API key accepted from its last verification");
                        Ok(snapshot.value)
                    }
                    _ => Err(failure.into()),
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
        self.keep(&hash, principal, request_id).await
    }

    /// Remembers what auth just said about the key whose digest is `hash`, unless the key was
    /// deleted meanwhile: write, then read the tombstone (see the module doc).
    async fn keep(
        &self,
        hash: &str,
        principal: Principal,
        request_id: &RequestId,
    ) -> Result<Principal, ApiError> {
        let id = principal.api_key_id.clone().unwrap_or_default();
        self.lkg.remember(&principal_key(hash), &principal).await;
        self.lkg.remember(&id_key(&id), &hash).await;
        if self.lkg.recall::<()>(&tombstone_key(&id)).await.is_some() {
            self.lkg.forget(&principal_key(hash)).await;
            return Err(refused_as_deleted(&id, request_id));
        }
        Ok(principal)
    }

    /// Forgets a deleted key at once, on every gateway, rather than when its entry expires: the
    /// tombstone first, then the entry (see the module doc). Called after auth deleted the key,
    /// inside the request's span (which carries the request id).
    pub async fn invalidate(&self, key_id: &str) {
        let tombstoned = self.lkg.remember(&tombstone_key(key_id), &()).await;
        let forgotten = match self.lkg.recall::<String>(&id_key(key_id)).await {
            Some(hash) => self.lkg.forget(&principal_key(&hash.value)).await,
            None => true,
        };
        if tombstoned && forgotten && self.lkg.forget(&id_key(key_id)).await {
            tracing::info!(api_key_id = key_id, "API key deleted; dropped from the shared cache");
        } else {
            // Fails open like the rest of the tier: the entry may answer for up to
            // `api_key_cache_ttl` more (then auth refuses the key and the entry is dropped),
            // or longer from the snapshot while auth is out.
            tracing::warn!(api_key_id = key_id, "could not drop a deleted API key from the cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_core::store::Store;

    use super::*;

    fn principal(id: &str) -> Principal {
        Principal {
            user_id: "u1".into(),
            email: "ada@example.com".into(),
            roles: vec!["user".into()],
            session_id: None,
            api_key_id: Some(id.into()),
        }
    }

    fn verifier() -> ApiKeyVerifier {
        ApiKeyVerifier::new(
            LastKnownGood::new(Store::memory(), Duration::from_secs(60)),
            Duration::from_secs(30),
        )
    }

    async fn cached(verifier: &ApiKeyVerifier, hash: &str) -> bool {
        verifier.lkg.recall::<Principal>(&principal_key(hash)).await.is_some()
    }

    #[tokio::test]
    async fn a_deletion_drops_the_shared_entry() {
        let verifier = verifier();
        let rid = RequestId("test".into());
        verifier.keep("h1", principal("k1"), &rid).await.unwrap();
        assert!(cached(&verifier, "h1").await);
        verifier.invalidate("k1").await;
        assert!(!cached(&verifier, "h1").await, "no gateway can answer from it any more");
    }

    #[tokio::test]
    async fn a_verification_that_lands_after_the_deletion_leaves_nothing_behind() {
        // Auth said yes just before the key was deleted; the answer arrives after the deletion
        // (which found no entry to drop): it is refused, and no entry of the key survives.
        let verifier = verifier();
        let rid = RequestId("test".into());
        verifier.invalidate("k1").await;
        let refused = verifier.keep("h1", principal("k1"), &rid).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 401);
        assert!(!cached(&verifier, "h1").await);
        // Another key is unaffected.
        verifier.keep("h2", principal("k2"), &rid).await.unwrap();
        assert!(cached(&verifier, "h2").await);
    }
}
