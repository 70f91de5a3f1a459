//! Configuration of the auth service.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mesh_core::grpc::ServerConfig;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener. Default: `127.0.0.1:50051`.
    pub listen: SocketAddr,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`). Default: `127.0.0.1:9051`.
    pub admin_listen: SocketAddr,
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// `iss` of every access token, published with the JWKS. Default: `mesh-auth`.
    pub issuer: String,
    /// `aud` of every access token, published with the JWKS. Default: `mesh`.
    pub audience: String,
    /// Lifetime of an access token. Default: 15m.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Lifetime of a refresh token, and of a session since its last refresh. Default: 30days.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// Emails (compared normalised) that get the `admin` role when they register. Default: none.
    pub admin_emails: Vec<String>,
    /// Keys that sign access tokens: the first signs, all are published so tokens signed by a
    /// key being rotated out still verify. Default: none, which makes the replicas sharing a
    /// store agree on one generated development key (never for production).
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Cost of the argon2id password hash. Default: m=19456 KiB, t=2, p=1 (OWASP's minimum).
    pub password_hash: PasswordHashConfig,
    /// How many password hashes may run at once, and how long a call waits for one.
    pub hashing: HashingConfig,
    /// API keys one user may hold at once. Default: 100.
    pub max_api_keys_per_user: u32,
}

/// One Ed25519 signing key, from inline PEM or a file.
#[derive(Clone, Deserialize, Serialize)]
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

/// argon2id parameters for new password hashes. Stored hashes carry their own parameters, so
/// raising these only affects passwords set from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordHashConfig {
    /// Memory in KiB. Default: 19456.
    pub memory_kib: u32,
    /// Passes over the memory. Default: 2.
    pub iterations: u32,
    /// Lanes. Default: 1.
    pub parallelism: u32,
}

/// The bound on password hashing. Each argon2id hash holds `password_hash.memory_kib` of memory
/// and a core for its whole run, so unbounded concurrent logins are unbounded memory (a login
/// flood once took a mesh to 7 GiB). Hashes run on their own threads, at most `max_concurrent`
/// at once; a call waits at most `max_wait` for one (never past its own gRPC deadline), then is
/// refused with RESOURCE_EXHAUSTED, which the gateway answers 503 + `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashingConfig {
    /// Hashes at once; `0` derives it: `min(cores, memory_budget_mib / password_hash memory)`,
    /// at least 1. More than the cores only adds waiting inside the hash. Default: 0.
    pub max_concurrent: usize,
    /// Memory all concurrent hashes may hold together, for the derived `max_concurrent`.
    /// Default: 256 (MiB), 13 hashes at the default cost.
    pub memory_budget_mib: u64,
    /// Longest wait for a free hashing slot before the call is refused. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Nice value of the hashing threads (Linux), 0..=19: under contention a hash yields the CPU
    /// to the latency-bound calls of this process and whatever shares its cores; an idle machine
    /// still gives hashing all of it. `0` runs them like every other thread. Default: 10.
    pub nice: i32,
}

impl Default for HashingConfig {
    fn default() -> Self {
        Self { max_concurrent: 0, memory_budget_mib: 256, max_wait: Duration::from_secs(1), nice: 10 }
    }
}

impl HashingConfig {
    /// The number of hashes allowed at once with `cost`, on a machine with `cores`.
    pub fn permits(&self, cost: PasswordHashConfig, cores: usize) -> usize {
        if self.max_concurrent > 0 {
            return self.max_concurrent;
        }
        let by_memory = (self.memory_budget_mib * 1024 / u64::from(cost.memory_kib.max(1))) as usize;
        cores.min(by_memory).max(1)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 50051).into(),
            admin_listen: ([127, 0, 0, 1], 9051).into(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            issuer: "mesh-auth".into(),
            audience: "mesh".into(),
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(30 * 24 * 3600),
            admin_emails: Vec::new(),
            signing_keys: Vec::new(),
            password_hash: PasswordHashConfig::default(),
            hashing: HashingConfig::default(),
            max_api_keys_per_user: 100,
        }
    }
}

impl Default for PasswordHashConfig {
    fn default() -> Self {
        Self { memory_kib: 19456, iterations: 2, parallelism: 1 }
    }
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
        crate::passwords::params(self.password_hash)?;
        anyhow::ensure!(
            self.hashing.max_concurrent > 0 || self.hashing.memory_budget_mib > 0,
            "hashing: set max_concurrent or a memory_budget_mib above 0"
        );
        anyhow::ensure!((0..=19).contains(&self.hashing.nice), "hashing.nice must be within 0..=19");
        Ok(())
    }
}

impl Listens for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn admin_listen(&self) -> SocketAddr {
        self.admin_listen
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
    fn hashing_slots_follow_memory_and_cores() {
        let default = HashingConfig::default();
        let cost = PasswordHashConfig::default();
        // 256 MiB / 19 MiB = 13 hashes' memory; the cores bound it first on small machines.
        assert_eq!(default.permits(cost, 2), 2);
        assert_eq!(default.permits(cost, 64), 13);
        let heavy = PasswordHashConfig { memory_kib: 512 * 1024, ..cost };
        assert_eq!(default.permits(heavy, 8), 1, "never zero");
        assert_eq!(HashingConfig { max_concurrent: 5, ..default }.permits(cost, 2), 5);
        let cfg: Config =
            mesh_core::config::Sources::from_env([("MESH_HASHING__MAX_WAIT", "250ms")]).load().unwrap();
        assert_eq!(cfg.hashing.max_wait, Duration::from_millis(250));
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
