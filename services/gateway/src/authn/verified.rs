//! Access tokens already verified here, remembered by their hash until they expire.
//!
//! Verifying an Ed25519 signature was a tenth of the mesh's time on the hottest route, spent
//! again on every request of a token already seen. A token's signature and claims cannot change
//! (a different token has a different hash), so what a verification said stays true until the
//! token expires, with two exceptions the cache checks on every hit: the token may expire
//! (`exp` plus the leeway, the same bound the verifier applies), and its signing key may leave
//! the key set (a rotation that drops the key ends the token here too). Revocation is not cached
//! with the token: every hit still asks [`super::revocations::Revocations`].
//!
//! The map holds at most `jwt.token_cache_entries` tokens; expired ones, then arbitrary ones,
//! make room (a dropped token costs one verification, never a wrong answer).

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::Claims;

/// The SHA-256 of a token: the cache never keeps the token itself.
pub(super) type TokenDigest = [u8; 32];

pub(super) fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Verified tokens, bounded in number.
#[derive(Debug)]
pub(super) struct VerifiedTokens {
    entries: Mutex<HashMap<TokenDigest, Verified>>,
    max_entries: usize,
    /// Seconds a token is still accepted past its `exp`: the verifier's leeway.
    leeway: u64,
}

#[derive(Clone, Debug)]
struct Verified {
    claims: Claims,
    /// The key that verified it; the token is good only while the key set still has it.
    kid: String,
}

// === impl VerifiedTokens ===

impl VerifiedTokens {
    /// `max_entries` zero turns the cache off.
    pub(super) fn new(max_entries: usize, leeway: u64) -> Self {
        Self { entries: Mutex::new(HashMap::new()), max_entries, leeway }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<TokenDigest, Verified>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The claims of the token with `digest` if it verified here, has not expired at `now`
    /// (Unix seconds) and its key is one `key_known` still accepts. An expired entry is dropped,
    /// so the token is verified again and refused with the verifier's own words.
    pub(super) fn get(
        &self,
        digest: &TokenDigest,
        now: u64,
        key_known: impl Fn(&str) -> bool,
    ) -> Option<Claims> {
        let mut entries = self.entries();
        let verified = entries.get(digest)?;
        if !self.still_valid(verified, now) || !key_known(&verified.kid) {
            entries.remove(digest);
            return None;
        }
        Some(verified.claims.clone())
    }

    /// Remembers a token the verifier accepted at `now`, signed by key `kid`.
    pub(super) fn insert(&self, digest: TokenDigest, kid: &str, claims: &Claims, now: u64) {
        if self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= self.max_entries {
            self.make_room(&mut entries, now);
        }
        entries.insert(digest, Verified { claims: claims.clone(), kid: kid.to_owned() });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }

    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn still_valid(&self, verified: &Verified, now: u64) -> bool {
        now <= verified.claims.exp.saturating_add(self.leeway)
    }

    /// Expired tokens go first, then arbitrary ones, a tenth of the map at once so a full map is
    /// not swept on every insert.
    fn make_room(&self, entries: &mut HashMap<TokenDigest, Verified>, now: u64) {
        entries.retain(|_, v| self.still_valid(v, now));
        let keep = self.max_entries - (self.max_entries / 10).max(1);
        if entries.len() > keep {
            let victims: Vec<TokenDigest> = entries.keys().take(entries.len() - keep).copied().collect();
            for victim in victims {
                entries.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { sub: "u1".into(), email: String::new(), roles: vec![], sid: "s1".into(), exp }
    }

    #[test]
    fn a_token_is_remembered_until_its_exp_plus_the_leeway() {
        let tokens = VerifiedTokens::new(10, 5);
        let d = digest("a.b.c");
        tokens.insert(d, "k1", &claims(1_000), 900);
        assert_eq!(tokens.get(&d, 1_005, |_| true).unwrap().sub, "u1");
        assert!(tokens.get(&d, 1_006, |_| true).is_none(), "past exp + leeway it is verified again");
        assert!(tokens.is_empty(), "and the expired entry is gone");
        assert!(tokens.get(&digest("other"), 900, |_| true).is_none());
    }

    #[test]
    fn a_token_whose_key_left_the_key_set_is_verified_again() {
        let tokens = VerifiedTokens::new(10, 0);
        let d = digest("a.b.c");
        tokens.insert(d, "k1", &claims(1_000), 900);
        assert!(tokens.get(&d, 901, |kid| kid == "k2").is_none());
        assert!(tokens.get(&d, 901, |_| true).is_none(), "dropped, not merely hidden");
    }

    #[test]
    fn the_map_stays_bounded() {
        let tokens = VerifiedTokens::new(100, 0);
        for i in 0..1_000u32 {
            tokens.insert(digest(&i.to_string()), "k1", &claims(10_000), 0);
            assert!(tokens.len() <= 100);
        }
        let off = VerifiedTokens::new(0, 0);
        off.insert(digest("t"), "k1", &claims(10_000), 0);
        assert!(off.is_empty(), "0 turns the cache off");
    }
}
