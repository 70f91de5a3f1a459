//! Secrets handed to clients (refresh tokens, API keys) and the form they are stored in.
//!
//! The store only ever sees a SHA-256 of a secret. A fast hash is enough here, unlike for
//! passwords: the secrets are 256 random bits, so there is nothing to guess, and a deterministic
//! digest is what lets a presented secret be found with one key lookup.

use sha2::{Digest, Sha256};

/// Random bytes in every secret: 256 bits.
const SECRET_BYTES: usize = 32;

/// A new secret: `prefix` followed by 64 hex characters.
pub(crate) fn new_secret(prefix: &str) -> String {
    format!("{prefix}{}", mesh_core::ids::random_hex(SECRET_BYTES))
}

/// Whether `value` has the shape [`new_secret`] gives with `prefix`; anything else can be refused
/// without a store round trip.
pub(crate) fn is_secret(prefix: &str, value: &str) -> bool {
    value.strip_prefix(prefix).is_some_and(|rest| {
        rest.len() == SECRET_BYTES * 2
            && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The stored form of a secret: lowercase hex SHA-256.
pub(crate) fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_recognisable_and_stored_as_digests() {
        let a = new_secret("mk_");
        assert_ne!(a, new_secret("mk_"));
        assert!(is_secret("mk_", &a));
        assert!(!is_secret("mk_", &a[1..]));
        assert!(!is_secret("mk_", &a.to_uppercase()));
        assert!(!is_secret("mk_", &format!("{a}0")));
        assert!(!is_secret("", &a));
        let d = digest(&a);
        assert_eq!(d.len(), 64);
        assert_ne!(d, a);
        assert_eq!(d, digest(&a));
    }
}
