//! Configuration of the auth service.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::hashing::{HashingConfig, PasswordHashConfig};

mesh_core::service_config! {
    /// The auth service: accounts, sessions and API keys, kept in `store`.
    pub struct Config {
        listen: 50051,
        admin_listen: 9051,
        /// `iss` of every access token, published with the JWKS. Default: `mesh-auth`.
        pub issuer: String = "mesh-auth".into(),
        /// `aud` of every access token, published with the JWKS. Default: `mesh`.
        pub audience: String = "mesh".into(),
        /// Lifetime of an access token. Default: 15m.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "mesh_core::config::HumanDuration")]
        pub access_ttl: Duration = Duration::from_secs(15 * 60),
        /// Lifetime of a refresh token, and of a session since its last refresh. Default: 30days.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "mesh_core::config::HumanDuration")]
        pub refresh_ttl: Duration = Duration::from_secs(30 * 24 * 3600),
        /// Emails (compared normalised) that get the `admin` role when they register. Default: none.
        pub admin_emails: Vec<String> = Vec::new(),
        /// Keys that sign access tokens: the first signs, all are published so tokens signed by a
        /// key being rotated out still verify. Default: none, which makes the replicas sharing a
        /// store agree on one generated development key (never for production).
        pub signing_keys: Vec<SigningKeyConfig> = Vec::new(),
        /// Cost of the argon2id password hash. Default: m=19456 KiB, t=2, p=1 (OWASP's minimum).
        pub password_hash: PasswordHashConfig = PasswordHashConfig::default(),
        /// How many password hashes may run at once, and how long a call waits for one.
        pub hashing: HashingConfig = HashingConfig::default(),
        /// API keys one user may hold at once. Default: 100.
        pub max_api_keys_per_user: u32 = 100,
    }
}

/// Keys whose environment value is a comma-separated list: `MESH_ADMIN_EMAILS=a@x.com,b@y.com`.
pub const LIST_KEYS: &[&str] = &["admin_emails"];

impl mesh_core::config::Validate for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Config::validate(self)
    }
}

/// One Ed25519 signing key, from inline PEM or a file.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// Key id, sent in the token header (`kid`) so verifiers pick the right public key.
    pub kid: String,
    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), e.g. from `openssl genpkey -algorithm ed25519`.
    #[serde(default)]
    pub private_key_pem: Option<String>,
    /// A file holding the same PEM, e.g. a mounted Kubernetes secret.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
}

// === impl Config ===

impl Config {
    /// Refuses a configuration that could not serve safely. Key material is checked when loaded.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.issuer.trim().is_empty(), "issuer must not be empty");
        anyhow::ensure!(!self.audience.trim().is_empty(), "audience must not be empty");
        anyhow::ensure!(self.access_ttl.as_secs() >= 1, "access_ttl must be at least 1s");
        anyhow::ensure!(self.refresh_ttl >= self.access_ttl, "refresh_ttl must be at least access_ttl");
        anyhow::ensure!(self.max_api_keys_per_user >= 1, "max_api_keys_per_user must be at least 1");
        let mut kids = BTreeSet::new();
        for key in &self.signing_keys {
            anyhow::ensure!(
                !key.kid.is_empty() && key.kid.len() <= 64 && key.kid.chars().all(|c| c.is_ascii_graphic()),
                "signing_keys: kid {:?} must be 1..=64 printable ASCII characters",
                key.kid
            );
            anyhow::ensure!(kids.insert(&key.kid), "signing_keys: kid {:?} appears twice", key.kid);
            anyhow::ensure!(
                key.private_key_pem.is_some() != key.private_key_file.is_some(),
                "signing_keys.{}: set exactly one of private_key_pem and private_key_file",
                key.kid
            );
        }
        self.password_hash.params()?;
        self.hashing.validate()
    }
}

// === impl SigningKeyConfig ===

/// Written by hand so a private key never reaches a log line.
impl std::fmt::Debug for SigningKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyConfig")
            .field("kid", &self.kid)
            .field("private_key_pem", &self.private_key_pem.as_ref().map(|_| "<redacted>"))
            .field("private_key_file", &self.private_key_file)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_production_grade() {
        let cfg = Config::default();
        cfg.validate().unwrap();
        assert_eq!(cfg.listen.port(), 50051);
        assert_eq!(
            cfg.password_hash,
            PasswordHashConfig { memory_kib: 19456, iterations: 2, parallelism: 1 }
        );
    }

    #[test]
    fn loads_through_the_mesh_sources_with_environment_overrides() {
        let cfg: Config = mesh_core::config::Sources::from_env([
            ("MESH_ISSUER", "https://auth.example"),
            ("MESH_ACCESS_TTL", "5m"),
            ("MESH_PASSWORD_HASH__ITERATIONS", "3"),
        ])
        .load()
        .unwrap();
        assert_eq!(cfg.issuer, "https://auth.example");
        assert_eq!(cfg.access_ttl, Duration::from_secs(300));
        assert_eq!(cfg.refresh_ttl, Duration::from_secs(30 * 24 * 3600));
        assert_eq!(cfg.password_hash.iterations, 3);
        cfg.validate().unwrap();
    }

    #[test]
    fn duplicate_kids_and_ambiguous_key_sources_are_refused() {
        let key = |kid: &str| SigningKeyConfig {
            kid: kid.into(),
            private_key_pem: Some("pem".into()),
            private_key_file: None,
        };
        let cfg = Config { signing_keys: vec![key("a"), key("a")], ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("twice"));
        let mut both = key("b");
        both.private_key_file = Some("/k.pem".into());
        let cfg = Config { signing_keys: vec![both], ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("exactly one"));
    }

    #[test]
    fn the_hashing_bound_loads_from_the_environment() {
        let cfg: Config =
            mesh_core::config::Sources::from_env([("MESH_HASHING__MAX_WAIT", "250ms")]).load().unwrap();
        assert_eq!(cfg.hashing.max_wait, Duration::from_millis(250));
        assert_eq!(
            cfg.hashing,
            HashingConfig { max_wait: Duration::from_millis(250), ..HashingConfig::default() }
        );
    }

    #[test]
    fn debug_output_hides_private_keys() {
        let key = SigningKeyConfig {
            kid: "k1".into(),
            private_key_pem: Some("-----BEGIN PRIVATE KEY-----secret".into()),
            private_key_file: None,
        };
        assert!(!format!("{key:?}").contains("secret"));
    }
}
