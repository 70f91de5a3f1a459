//! Local verification of access tokens against the auth service's JWKS.
//!
//! The key set is fetched at start, refreshed periodically, and fetched again when a token names
//! an unknown `kid` (at most once per `jwks_min_refetch`, so forged kids cannot hammer auth).
//! The algorithm is pinned to EdDSA; `exp`, `nbf`, `iss` and `aud` are all checked.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mesh_core::client::ServiceChannel as Channel;
use mesh_proto::auth::GetJwksRequest;
use mesh_proto::auth::auth_service_client::AuthServiceClient;
use serde::Deserialize;

use crate::clients::grpc;
use crate::config::JwtConfig;
use crate::context::RequestId;
use crate::error::ApiError;

/// The claims the auth service puts in an access token.
#[derive(Clone, Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub sid: String,
    pub exp: u64,
}

/// The current key set.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// The JWKS document as published, for `/.well-known/jwks.json`.
    document: Option<serde_json::Value>,
}

pub struct JwksVerifier {
    auth: AuthServiceClient<Channel>,
    deadline: Duration,
    validation: Validation,
    min_refetch: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises fetches and remembers when the last one happened.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier").finish_non_exhaustive()
    }
}

/// Whether `x` is base64url of exactly 32 bytes. jsonwebtoken's rust_crypto EdDSA verifier
/// slices the key as `[..32]` and would panic on a shorter one, so keys are checked here.
fn is_ed25519_public_key(x: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(x).is_ok_and(|bytes| bytes.len() == 32)
}

// === impl JwksVerifier ===

impl JwksVerifier {
    pub fn new(auth: AuthServiceClient<Channel>, deadline: Duration, cfg: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = cfg.leeway.as_secs();
        Self {
            auth,
            deadline,
            validation,
            min_refetch: cfg.jwks_min_refetch,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The published JWKS, fetching it first if none is known yet.
    pub async fn document(&self, request_id: &RequestId) -> Result<serde_json::Value, ApiError> {
        if let Some(doc) = self.current().document.clone() {
            return Ok(doc);
        }
        self.refresh(request_id, true).await?;
        self.current()
            .document
            .clone()
            .ok_or_else(|| ApiError::unavailable("signing keys are not available yet"))
    }

    /// Fetches the key set from auth. Unless `force`, skips when fetched within `min_refetch`.
    pub async fn refresh(&self, request_id: &RequestId, force: bool) -> Result<(), ApiError> {
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let jwks = self
            .auth
            .clone()
            .get_jwks(grpc(request_id, self.deadline, GetJwksRequest {}))
            .await
            .map_err(|s| ApiError::from_status("auth", &s))?
            .into_inner();
        let mut keys = HashMap::new();
        let mut published = Vec::new();
        for jwk in jwks.keys {
            if jwk.kty != "OKP" || jwk.crv != "Ed25519" || !is_ed25519_public_key(&jwk.x) {
                tracing::warn!(kid = %jwk.kid, "skipping a JWK that is not an Ed25519 public key");
                continue;
            }
            match DecodingKey::from_ed_components(&jwk.x) {
                Ok(key) => {
                    keys.insert(jwk.kid.clone(), key);
                }
                Err(e) => {
                    tracing::warn!(kid = %jwk.kid, error = %e, "skipping an unusable JWK");
                    continue;
                }
            }
            published.push(serde_json::json!({
                "kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "kid": jwk.kid, "alg": "EdDSA", "use": "sig",
            }));
        }
        tracing::debug!(keys = keys.len(), "JWKS refreshed");
        let document = serde_json::json!({ "keys": published });
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(KeySet { keys, document: Some(document) });
        Ok(())
    }

    /// Verifies `token` and returns its claims, or a 401 saying why (503 if keys are unreachable).
    pub async fn verify(&self, token: &str, request_id: &RequestId) -> Result<Claims, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::unauthorized("the token is malformed"))?;
        if header.alg != Algorithm::EdDSA {
            return Err(ApiError::unauthorized("the token's algorithm is not accepted (EdDSA only)"));
        }
        let kid = header.kid.ok_or_else(|| ApiError::unauthorized("the token has no key id (kid)"))?;
        let key = match self.key(&kid) {
            Some(key) => key,
            None => {
                // Unknown kid: maybe auth rotated keys. Fetch again (rate limited), then decide.
                if let Err(e) = self.refresh(request_id, false).await
                    && self.current().document.is_none()
                {
                    return Err(e);
                }
                self.key(&kid)
                    .ok_or_else(|| ApiError::unauthorized("the token was signed by an unknown key"))?
            }
        };
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            ApiError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidAudience => "the token is not meant for this audience",
                ErrorKind::InvalidIssuer => "the token was not issued by this mesh",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted (EdDSA only)",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                _ => "the token is invalid",
            })
        })?;
        Ok(data.claims)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        self.current().keys.get(kid).cloned()
    }

    /// Keeps the key set fresh until `shutdown` resolves.
    pub fn spawn_refresher(
        self: Arc<Self>,
        every: Duration,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        tokio::spawn(async move {
            let request_id = RequestId("jwks-refresh".into());
            let refresher = async {
                loop {
                    if let Err(e) = self.refresh(&request_id, true).await {
                        tracing::warn!(detail = %e.problem.detail, "JWKS refresh failed; keeping the last key set");
                    }
                    tokio::time::sleep(every).await;
                }
            };
            tokio::select! {
                () = refresher => {}
                () = shutdown => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_32_byte_keys_are_accepted() {
        assert!(is_ed25519_public_key("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"));
        assert!(!is_ed25519_public_key("AAAA"));
        assert!(!is_ed25519_public_key("not base64!"));
        assert!(!is_ed25519_public_key(""));
    }
}
