//! The Ed25519 keys that sign access tokens, and their public JWK set.
//!
//! Rotation is a config change: put the new key first (it signs from then on) and keep the old
//! one after it until every token it signed has expired; both are published in the JWKS, and the
//! `kid` in each token's header tells a verifier which one to use.
//!
//! Without configured keys a development key is generated. Replicas sharing a store must sign
//! with the same key, or a token from one would fail against the JWKS fetched from another, so
//! the first replica to start stores its key with `set_nx` and every other one reads it back.

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use jsonwebtoken::EncodingKey;
use mesh_core::store::Store;
use mesh_proto::auth::Jwk;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::SigningKeyConfig;

/// Where the shared development key lives. Not namespaced by anything else: one per store prefix.
const DEV_KEY: &str = "auth:dev-signing-key";

/// One private key and what verifiers need to know about it.
pub struct SigningKey {
    pub kid: String,
    pub(crate) encoding: EncodingKey,
    /// The raw 32-byte Ed25519 public key.
    pub public: [u8; 32],
}

/// The configured keys; the first one signs. Never empty.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

/// The development key as stored for the other replicas.
#[derive(Serialize, Deserialize)]
struct StoredDevKey {
    kid: String,
    private_key_pem: String,
}

// === impl SigningKey ===

impl SigningKey {
    /// Parses a PKCS#8 PEM Ed25519 private key. Errors never quote the key.
    pub fn from_pem(kid: &str, pem: &str) -> anyhow::Result<Self> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map_err(|_| anyhow::anyhow!("signing key {kid:?}: not a PKCS#8 PEM Ed25519 private key"))?;
        Self::from_dalek(kid, &key)
    }

    fn from_dalek(kid: &str, key: &ed25519_dalek::SigningKey) -> anyhow::Result<Self> {
        let der = key.to_pkcs8_der().map_err(|e| anyhow::anyhow!("signing key {kid:?}: {e}"))?;
        Ok(Self {
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            public: key.verifying_key().to_bytes(),
        })
    }

    /// The public half as an RFC 8037 OKP JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(self.public),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            r#use: "sig".into(),
        }
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

// === impl KeySet ===

impl KeySet {
    /// The configured keys, or the development key shared through `store` when there are none.
    pub async fn load(configured: &[SigningKeyConfig], store: &Store) -> anyhow::Result<Self> {
        if configured.is_empty() {
            let key = shared_dev_key(store).await?;
            tracing::warn!(
                kid = %key.kid,
                "no signing_keys configured: signing with a generated development key kept in the store; \
                 configure signing_keys in production"
            );
            return Ok(Self { keys: vec![key] });
        }
        let mut keys = Vec::with_capacity(configured.len());
        for cfg in configured {
            let pem = match (&cfg.private_key_pem, &cfg.private_key_file) {
                (Some(pem), _) => pem.clone(),
                (None, Some(path)) => std::fs::read_to_string(path)
                    .with_context(|| format!("signing key {:?}: cannot read {}", cfg.kid, path.display()))?,
                (None, None) => anyhow::bail!("signing key {:?}: no private key", cfg.kid),
            };
            keys.push(SigningKey::from_pem(&cfg.kid, &pem)?);
        }
        Ok(Self { keys })
    }

    /// Keys given directly; the first signs. For tests and embedding.
    pub fn new(keys: Vec<SigningKey>) -> anyhow::Result<Self> {
        anyhow::ensure!(!keys.is_empty(), "a key set needs at least one key");
        Ok(Self { keys })
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Every key's public JWK, the signing key first.
    pub fn jwks(&self) -> Vec<Jwk> {
        self.keys.iter().map(SigningKey::jwk).collect()
    }
}

/// A fresh Ed25519 key and its PKCS#8 PEM. Its kid is `kid_prefix` and 16 hex digits of the
/// SHA-256 of its public key, so the same key always gets the same kid.
pub fn generate(kid_prefix: &str) -> anyhow::Result<(SigningKey, String)> {
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let digest = Sha256::digest(key.verifying_key().as_bytes());
    let kid = format!("{kid_prefix}{}", &hex::encode(digest)[..16]);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow::anyhow!("encoding a new key: {e}"))?;
    Ok((SigningKey::from_dalek(&kid, &key)?, pem.to_string()))
}

/// The development key every replica on `store` agrees on: first writer wins.
async fn shared_dev_key(store: &Store) -> anyhow::Result<SigningKey> {
    let (key, pem) = generate("dev-")?;
    let candidate = StoredDevKey { kid: key.kid, private_key_pem: pem };
    // No TTL: replicas started a month apart must still agree.
    store.set_nx_json(DEV_KEY, &candidate, None).await?;
    let stored: StoredDevKey =
        store.get_json(DEV_KEY).await?.context("the development signing key vanished from the store")?;
    SigningKey::from_pem(&stored.kid, &stored.private_key_pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replicas_on_one_store_share_the_development_key() {
        let store = Store::memory();
        let a = KeySet::load(&[], &store).await.unwrap();
        let b = KeySet::load(&[], &store).await.unwrap();
        assert_eq!(a.jwks(), b.jwks());
        assert!(a.current().kid.starts_with("dev-"));
        let other = KeySet::load(&[], &Store::memory()).await.unwrap();
        assert_ne!(a.jwks(), other.jwks(), "a new store gets a new key");
    }

    #[tokio::test]
    async fn configured_keys_are_published_in_order_and_the_first_signs() {
        let (_, new_pem) = generate("x").unwrap();
        let (_, old_pem) = generate("x").unwrap();
        let cfg = [
            SigningKeyConfig {
                kid: "2025-new".into(),
                private_key_pem: Some(new_pem),
                private_key_file: None,
            },
            SigningKeyConfig {
                kid: "2024-old".into(),
                private_key_pem: Some(old_pem),
                private_key_file: None,
            },
        ];
        let keys = KeySet::load(&cfg, &Store::memory()).await.unwrap();
        assert_eq!(keys.current().kid, "2025-new");
        let jwks = keys.jwks();
        assert_eq!(jwks.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["2025-new", "2024-old"]);
        let jwk = &jwks[0];
        assert_eq!(
            (jwk.kty.as_str(), jwk.crv.as_str(), jwk.alg.as_str(), jwk.r#use.as_str()),
            ("OKP", "Ed25519", "EdDSA", "sig")
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&jwk.x).unwrap(), keys.current().public);
    }

    #[tokio::test]
    async fn a_bad_pem_is_refused_without_quoting_it() {
        let cfg = [SigningKeyConfig {
            kid: "k".into(),
            private_key_pem: Some("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----".into()),
            private_key_file: None,
        }];
        let err = KeySet::load(&cfg, &Store::memory()).await.unwrap_err().to_string();
        assert!(err.contains("\"k\"") && !err.contains("c2VjcmV0"), "{err}");
    }
}
