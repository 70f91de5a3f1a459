//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (tens of milliseconds, MiBs of memory), so it runs on the
//! blocking pool and never stalls the runtime's workers. Hashes are PHC strings that carry their
//! own salt and parameters, so verifying works across parameter changes.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use mesh_core::ServiceError;
use rand::rngs::OsRng;

use crate::config::PasswordHashConfig;

/// Hashes and verifies passwords. Cheap to clone.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon: Argon2<'static>,
    /// A hash of a random password, verified against when the account does not exist so an
    /// unknown email costs the same time as a wrong password (no user enumeration by timing).
    dummy_hash: String,
}

/// The argon2id parameters of `cfg`, refused when argon2 would refuse them.
pub(crate) fn params(cfg: PasswordHashConfig) -> anyhow::Result<Params> {
    Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
        .map_err(|e| anyhow::anyhow!("password_hash: {e}"))
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon.hash_password(password.as_bytes(), &salt)?.to_string())
}

fn verify_with(argon: &Argon2<'_>, phc: &str, password: &str) -> Result<bool, ServiceError> {
    let parsed =
        PasswordHash::new(phc).map_err(|e| ServiceError::internal(format!("stored password hash: {e}")))?;
    match argon.verify_password(password.as_bytes(), &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(ServiceError::internal(format!("password verify: {e}"))),
    }
}

/// Runs `f` on the blocking pool; a panic there is an internal error, not a crash.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(ServiceError::internal)?
}

// === impl Passwords ===

impl Passwords {
    /// Builds the hasher and its dummy hash (one hash at start-up).
    pub async fn new(cfg: PasswordHashConfig) -> anyhow::Result<Self> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params(cfg)?);
        let dummy_hash = {
            let argon = argon.clone();
            let secret = mesh_core::ids::random_hex(16);
            tokio::task::spawn_blocking(move || hash_with(&argon, &secret))
                .await?
                .map_err(|e| anyhow::anyhow!("password_hash: {e}"))?
        };
        Ok(Self { inner: Arc::new(Inner { argon, dummy_hash }) })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) of `password` with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, ServiceError> {
        let inner = self.inner.clone();
        let password = password.to_owned();
        blocking(move || hash_with(&inner.argon, &password).map_err(ServiceError::internal)).await
    }

    /// Whether `password` matches the stored `phc` hash.
    pub async fn verify(&self, phc: &str, password: &str) -> Result<bool, ServiceError> {
        let inner = self.inner.clone();
        let (phc, password) = (phc.to_owned(), password.to_owned());
        blocking(move || verify_with(&inner.argon, &phc, &password)).await
    }

    /// Spends the time of one verification and fails: for logins to accounts that do not exist.
    pub async fn verify_nothing(&self, password: &str) -> Result<bool, ServiceError> {
        let inner = self.inner.clone();
        let password = password.to_owned();
        blocking(move || verify_with(&inner.argon, &inner.dummy_hash, &password).map(|_| false)).await
    }
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", self.inner.argon.params()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> PasswordHashConfig {
        PasswordHashConfig { memory_kib: 64, iterations: 1, parallelism: 1 }
    }

    #[tokio::test]
    async fn hashes_are_salted_argon2id_and_verify() {
        let passwords = Passwords::new(cheap()).await.unwrap();
        let a = passwords.hash("correct horse").await.unwrap();
        let b = passwords.hash("correct horse").await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt per hash");
        assert!(passwords.verify(&a, "correct horse").await.unwrap());
        assert!(!passwords.verify(&a, "correct horse!").await.unwrap());
        assert!(!passwords.verify_nothing("correct horse").await.unwrap());
    }

    #[tokio::test]
    async fn a_corrupt_stored_hash_is_internal_not_a_match() {
        let passwords = Passwords::new(cheap()).await.unwrap();
        assert!(matches!(passwords.verify("not a hash", "x").await, Err(ServiceError::Internal(_))));
    }

    #[test]
    fn parameters_argon2_refuses_are_refused_at_start() {
        assert!(params(PasswordHashConfig { memory_kib: 1, iterations: 1, parallelism: 1 }).is_err());
        assert!(params(PasswordHashConfig::default()).is_ok());
    }
}
