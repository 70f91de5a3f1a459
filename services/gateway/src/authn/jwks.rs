//! Local verification of access tokens against the auth service's JWKS.
//!
//! The key set is fetched at start, refreshed periodically, and fetched again when a token names
//! an unknown `kid` (at most once per `jwks_min_refetch`, so forged kids cannot hammer auth).
//! The algorithm is pinned to EdDSA; `exp`, `nbf`, `iss` and `aud` are all checked.
//!
//! Every fetched key set is remembered in the store (one global entry). A gateway that has no
//! key set and cannot reach auth (it started during an auth outage) loads that snapshot, so
//! tokens keep verifying; the refresher keeps asking auth, more often while it fails.
//!
//! A token that verifies is accepted only if its session (`sid`, required) is not revoked
//! ([`Revocations`]): that is what makes logout and refresh-token reuse stop it at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mesh_proto::auth::GetJwksRequest;
use serde::{Deserialize, Serialize};

use crate::clients::Auth;
use crate::config::JwtConfig;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::fallback::LastKnownGood;

use super::revocations::{Checked, Revocations};
use super::verified::{self, VerifiedTokens};

/// The last-known-good key of the key set.
const SNAPSHOT_KEY: &str = "jwks";

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
    /// Set when the keys came from the store's snapshot: its age then, and when it was loaded.
    snapshot: Option<(Duration, Instant)>,
}

/// One public key as auth publishes it; what the snapshot holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PublicJwk {
    kid: String,
    kty: String,
    crv: String,
    x: String,
}

pub struct JwksVerifier {
    auth: Auth,
    lkg: LastKnownGood,
    validation: Validation,
    min_refetch: Duration,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises fetches and remembers when the last one happened.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    revocations: Revocations,
    /// Tokens already verified here, so a token's signature is checked once, not per request.
    verified: VerifiedTokens,
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
    pub fn new(auth: Auth, cfg: &JwtConfig, lkg: LastKnownGood) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[&cfg.issuer]);
        validation.set_audience(&[&cfg.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.validate_exp = true;
        validation.leeway = cfg.leeway.as_secs();
        let revocations =
            Revocations::new(lkg.clone(), cfg.revocation_cache_ttl, cfg.revocation_cache_entries, cfg.leeway);
        Self {
            auth,
            lkg,
            validation,
            min_refetch: cfg.jwks_min_refetch,
            keys: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            revocations,
            verified: VerifiedTokens::new(cfg.token_cache_entries, cfg.leeway.as_secs()),
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

    /// How old the key set is when it came from the store's snapshot rather than from auth.
    pub fn snapshot_age(&self) -> Option<Duration> {
        self.current().snapshot.map(|(age, loaded)| age + loaded.elapsed())
    }

    /// Fetches the key set from auth. Unless `force`, skips when fetched within `min_refetch`.
    /// When auth cannot answer and no key set is known yet, loads the last known one.
    pub async fn refresh(&self, request_id: &RequestId, force: bool) -> Result<(), ApiError> {
        let mut last = self.last_fetch.lock().await;
        if !force && last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let fetched =
            crate::context::with_request_id(request_id.clone(), self.auth.get_jwks(GetJwksRequest {}));
        let jwks = match fetched.await {
            Ok(jwks) => jwks,
            Err(failure) => {
                let error = ApiError::from(failure);
                if self.current().document.is_none() && self.load_snapshot().await {
                    return Ok(());
                }
                return Err(error);
            }
        };
        let fetched: Vec<PublicJwk> =
            jwks.keys.into_iter().map(|k| PublicJwk { kid: k.kid, kty: k.kty, crv: k.crv, x: k.x }).collect();
        let set = key_set(&fetched, None);
        tracing::debug!(keys = set.keys.len(), "JWKS refreshed");
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        self.lkg.remember(SNAPSHOT_KEY, &fetched).await;
        Ok(())
    }

    /// Installs the remembered key set; whether there was one.
    async fn load_snapshot(&self) -> bool {
        let Some(snapshot) = self.lkg.recall::<Vec<PublicJwk>>(SNAPSHOT_KEY).await else {
            return false;
        };
        let set = key_set(&snapshot.value, Some((snapshot.age, Instant::now())));
        if set.keys.is_empty() {
            return false;
        }
        metrics::counter!("gateway_authn_fallbacks_total", "credential" => "jwks").increment(1);
        tracing::info!(
            keys = set.keys.len(),
            age_s = snapshot.age.as_secs(),
            "auth unavailable; verifying tokens with the last known key set"
        );
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        true
    }

    /// Verifies `token` and returns its claims, or a 401 saying why (503 if keys are unreachable).
    /// A token whose session was revoked is refused like an invalid one. A token verified here
    /// before is not verified again until it expires ([`VerifiedTokens`]); its session is checked
    /// every time.
    pub async fn verify(&self, token: &str, request_id: &RequestId) -> Result<Claims, ApiError> {
        let digest = verified::digest(token);
        let now = mesh_core::ids::unix_now().max(0) as u64;
        let keys = self.current();
        let claims = match self.verified.get(&digest, now, |kid| keys.keys.contains_key(kid)) {
            Some(claims) => claims,
            None => {
                let (kid, claims) = self.verify_signature(token, request_id).await?;
                self.verified.insert(digest, &kid, &claims, now);
                claims
            }
        };
        if let Some(checked) = self.revocations.revoked(&claims.sid, claims.exp).await {
            metrics::counter!("gateway_authn_revoked_total", "credential" => "token").increment(1);
            // Logged once per session and gateway (when the store said so); a revoked token
            // replayed later is answered from the cache and only counted.
            if checked == Checked::Store {
                tracing::info!(
                    request_id = request_id.as_str(),
                    user_id = %claims.sub,
                    session_id = %claims.sid,
                    "access token refused: its session was revoked"
                );
            }
            return Err(ApiError::unauthorized("the token's session has been revoked"));
        }
        Ok(claims)
    }

    /// The full check of a token: header, key, signature and claims; the key id and claims of
    /// a token that passes.
    async fn verify_signature(
        &self,
        token: &str,
        request_id: &RequestId,
    ) -> Result<(String, Claims), ApiError> {
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
        let claims = data.claims;
        // Every token auth issues names its session; one without could never be revoked.
        if claims.sid.is_empty() {
            return Err(ApiError::unauthorized("the token lacks a required claim"));
        }
        Ok((kid, claims))
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
                    // While auth fails (or the keys came from the snapshot), ask again sooner.
                    let pause = match self.refresh(&request_id, true).await {
                        Err(e) => {
                            tracing::warn!(detail = %e.problem.detail, "JWKS refresh failed; keeping the last key set");
                            every.min(self.min_refetch)
                        }
                        Ok(()) if self.current().snapshot.is_some() => every.min(self.min_refetch),
                        Ok(()) => every,
                    };
                    tokio::time::sleep(pause).await;
                }
            };
            tokio::select! {
                () = refresher => {}
                () = shutdown => {}
            }
        });
    }
}

/// The verifying keys and the published document of `jwks`; keys that are not Ed25519 public
/// keys are skipped.
fn key_set(jwks: &[PublicJwk], snapshot: Option<(Duration, Instant)>) -> KeySet {
    let mut keys = HashMap::new();
    let mut published = Vec::new();
    for jwk in jwks {
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
    KeySet { keys, document: Some(serde_json::json!({ "keys": published })), snapshot }
}

#[cfg(test)]
mod tests {
    use mesh_core::store::Store;

    use super::*;

    /// A verifier whose auth service is unreachable (nothing listens on port 1).
    fn offline_verifier(lkg: LastKnownGood) -> JwksVerifier {
        offline_verifier_with(lkg, &JwtConfig::default())
    }

    fn offline_verifier_with(lkg: LastKnownGood, cfg: &JwtConfig) -> JwksVerifier {
        let auth = mesh_core::client::ClientConfig {
            endpoints: vec!["http://127.0.0.1:1".into()],
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let services = crate::config::Services { auth, ..Default::default() };
        let clients = crate::clients::Clients::dial(crate::Domain::Identity, &services).unwrap();
        JwksVerifier::new(clients.auth, cfg, lkg)
    }

    fn token(signing: &ed25519_dalek::SigningKey, kid: &str) -> String {
        token_expiring(signing, kid, mesh_core::ids::unix_now() + 600)
    }

    fn token_expiring(signing: &ed25519_dalek::SigningKey, kid: &str, exp: i64) -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let now = mesh_core::ids::unix_now();
        let claims = serde_json::json!({
            "sub": "u1", "iss": "mesh-auth", "aud": "mesh", "nbf": now, "exp": exp, "sid": "s1",
        });
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let pem = signing.to_pkcs8_pem(Default::default()).unwrap();
        let key = jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    #[tokio::test]
    async fn a_verifier_started_while_auth_is_down_uses_the_last_known_key_set() {
        use base64::Engine;
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let rid = RequestId("test".into());
        let token = token(&signing, "k1");

        let nothing_known = offline_verifier(LastKnownGood::new(Store::memory(), Duration::from_secs(60)));
        let refused = nothing_known.verify(&token, &rid).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 503, "no keys and no snapshot: auth's outage shows");

        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        let remembered = vec![PublicJwk { kid: "k1".into(), kty: "OKP".into(), crv: "Ed25519".into(), x }];
        lkg.remember(SNAPSHOT_KEY, &remembered).await;
        let verifier = offline_verifier(lkg);
        assert!(verifier.refresh(&rid, true).await.is_ok(), "the snapshot stands in for auth");
        assert_eq!(verifier.verify(&token, &rid).await.unwrap().sub, "u1");
        assert!(verifier.snapshot_age().is_some());
        assert_eq!(verifier.document(&rid).await.unwrap()["keys"][0]["kid"], "k1");
        let forged = token_with_other_key();
        assert_eq!(verifier.verify(&forged, &rid).await.unwrap_err().status.as_u16(), 401);
    }

    /// A verifier that knows the key `signing` (through the snapshot), with `cfg`.
    async fn verifier_knowing(signing: &ed25519_dalek::SigningKey, cfg: &JwtConfig) -> JwksVerifier {
        use base64::Engine;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        let known = vec![PublicJwk { kid: "k1".into(), kty: "OKP".into(), crv: "Ed25519".into(), x }];
        lkg.remember(SNAPSHOT_KEY, &known).await;
        let verifier = offline_verifier_with(lkg, cfg);
        verifier.refresh(&RequestId("test".into()), true).await.unwrap();
        verifier
    }

    #[tokio::test]
    async fn a_cached_token_is_still_refused_after_it_expires() {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let cfg = JwtConfig { leeway: Duration::ZERO, ..JwtConfig::default() };
        let verifier = verifier_knowing(&signing, &cfg).await;
        let rid = RequestId("test".into());
        let exp = mesh_core::ids::unix_now() + 1;
        let token = token_expiring(&signing, "k1", exp);

        assert_eq!(verifier.verify(&token, &rid).await.unwrap().sub, "u1");
        assert_eq!(verifier.verified.len(), 1, "the verified token is remembered");
        assert_eq!(verifier.verify(&token, &rid).await.unwrap().sub, "u1", "and answered from memory");

        // Wait for the clock to pass `exp` (a second at most), then the same token is refused.
        let deadline = Instant::now() + Duration::from_secs(5);
        while mesh_core::ids::unix_now() <= exp {
            assert!(Instant::now() < deadline, "the clock did not pass exp");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let refused = verifier.verify(&token, &rid).await.unwrap_err();
        assert_eq!(refused.status.as_u16(), 401);
        assert_eq!(refused.problem.detail, "the token has expired", "refused in the verifier's words");
    }

    #[tokio::test]
    async fn a_cached_token_is_refused_once_its_key_leaves_the_key_set() {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let verifier = verifier_knowing(&signing, &JwtConfig::default()).await;
        let rid = RequestId("test".into());
        let token = token(&signing, "k1");
        assert!(verifier.verify(&token, &rid).await.is_ok());
        // Auth rotated and dropped k1.
        *verifier.keys.write().unwrap() = Arc::new(key_set(&[], None));
        assert_eq!(verifier.verify(&token, &rid).await.unwrap_err().status.as_u16(), 401);
    }

    fn token_with_other_key() -> String {
        token(&ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng), "k1")
    }

    #[test]
    fn only_32_byte_keys_are_accepted() {
        assert!(is_ed25519_public_key("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"));
        assert!(!is_ed25519_public_key("AAAA"));
        assert!(!is_ed25519_public_key("not base64!"));
        assert!(!is_ed25519_public_key(""));
    }
}
