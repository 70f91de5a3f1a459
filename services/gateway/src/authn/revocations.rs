//! Revoked sessions: what stops an access token before its `exp`.
//!
//! An access token is verified locally, so on its own it works until it expires however its
//! session ended. Auth marks a revoked session (logout, refresh-token reuse) in the store under
//! `auth:revoked:{sid}` for as long as any token of the session can live, and every gateway
//! checks the `sid` of every token it accepts. To keep that off the hot path each gateway
//! remembers verdicts locally ([`Verdicts`]):
//!
//! - "not revoked" for `jwt.revocation_cache_ttl` (500ms by default): the longest a revocation
//!   takes to reach this gateway, plus one store read;
//! - "revoked" until the token's own `exp` (plus the leeway): a revocation is never undone, so
//!   a replayed revoked token costs no store read at all.
//!
//! So a token costs at most one store read per `revocation_cache_ttl` per gateway, and none in
//! between. The map holds at most `jwt.revocation_cache_entries` sessions.
//!
//! A store that fails (or rests after failing, [`LastKnownGood`]) fails open, like every other
//! use of the store tier: the token is accepted and the verdict is not remembered, so the check
//! applies again as soon as the store answers. Until then a token revoked before the outage
//! works on a gateway that had not seen the revocation yet; no new revocation can happen during
//! the outage, because auth cannot write its marker (the logout fails instead).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fallback::LastKnownGood;

/// The key auth writes when it revokes a session (`auth::sessions::revoked_key`). The gateways
/// and auth must share one store and key prefix for revocation to work.
pub fn revoked_key(session_id: &str) -> String {
    format!("auth:revoked:{session_id}")
}

/// Whether sessions are revoked, asked of the store behind a local cache.
#[derive(Debug)]
pub struct Revocations {
    lkg: LastKnownGood,
    verdicts: Mutex<Verdicts>,
    /// Added to a revoked verdict's lifetime: the leeway the verifier allows past `exp`.
    leeway: Duration,
}

/// Where a verdict came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// This gateway's cache.
    Cache,
    /// The store, just now.
    Store,
}

// === impl Revocations ===

impl Revocations {
    pub fn new(lkg: LastKnownGood, not_revoked_for: Duration, max_entries: usize, leeway: Duration) -> Self {
        Self { lkg, verdicts: Mutex::new(Verdicts::new(not_revoked_for, max_entries)), leeway }
    }

    fn verdicts(&self) -> std::sync::MutexGuard<'_, Verdicts> {
        self.verdicts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(how it was known)` when session `sid` was revoked; `None` when it was not, or the
    /// store could not say (fail open, see the module doc). `exp` is the token's, in Unix
    /// seconds: a revoked verdict is kept until then.
    pub async fn revoked(&self, sid: &str, exp: u64) -> Option<Checked> {
        if let Some(revoked) = self.verdicts().get(sid, Instant::now()) {
            return revoked.then_some(Checked::Cache);
        }
        // Stamped before the read: a "not revoked" read that began before a logout and came
        // back late must not be trusted for a whole cache period after it came back.
        let asked = Instant::now();
        let found = self.lkg.peek(&revoked_key(sid)).await?;
        let now = asked;
        let revoked = found.is_some();
        let until = if revoked {
            let left = Duration::from_secs(exp.saturating_sub(mesh_core::ids::unix_now() as u64));
            now.checked_add(left + self.leeway)
        } else {
            None
        };
        self.verdicts().insert(sid, revoked, until, now);
        revoked.then_some(Checked::Store)
    }
}

/// Local verdicts per session id, bounded in number.
#[derive(Debug)]
pub struct Verdicts {
    entries: HashMap<String, Verdict>,
    not_revoked_for: Duration,
    max_entries: usize,
}

#[derive(Clone, Copy, Debug)]
struct Verdict {
    revoked: bool,
    until: Instant,
}

// === impl Verdicts ===

impl Verdicts {
    pub fn new(not_revoked_for: Duration, max_entries: usize) -> Self {
        Self { entries: HashMap::new(), not_revoked_for, max_entries: max_entries.max(1) }
    }

    /// The verdict on `sid` still valid at `now`, if any.
    pub fn get(&self, sid: &str, now: Instant) -> Option<bool> {
        self.entries.get(sid).filter(|v| v.until > now).map(|v| v.revoked)
    }

    /// Remembers a verdict read at `now`: "not revoked" for `not_revoked_for`, "revoked" until
    /// `revoked_until` (a revoked verdict never shortens, whichever token of the session asks).
    pub fn insert(&mut self, sid: &str, revoked: bool, revoked_until: Option<Instant>, now: Instant) {
        if !revoked && self.not_revoked_for.is_zero() {
            return;
        }
        let until = match (revoked, revoked_until) {
            (true, Some(until)) => until,
            _ => now + self.not_revoked_for,
        };
        if let Some(existing) = self.entries.get_mut(sid) {
            if existing.revoked && existing.until > now && !revoked {
                return;
            }
            existing.until = if existing.revoked == revoked { existing.until.max(until) } else { until };
            existing.revoked = revoked;
            return;
        }
        self.make_room(now);
        self.entries.insert(sid.to_owned(), Verdict { revoked, until });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keeps the map under `max_entries`: expired verdicts go first, then arbitrary ones, a
    /// tenth of the map at once so a full map is not swept on every insert. Losing a verdict
    /// costs one store read, never a wrong answer.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.max_entries {
            return;
        }
        self.entries.retain(|_, v| v.until > now);
        let keep = self.max_entries - (self.max_entries / 10).max(1);
        if self.entries.len() > keep {
            let excess = self.entries.len() - keep;
            let victims: Vec<String> = self.entries.keys().take(excess).cloned().collect();
            for victim in victims {
                self.entries.remove(&victim);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use mesh_core::store::Store;

    use super::*;

    const TTL: Duration = Duration::from_millis(500);

    #[test]
    fn a_not_revoked_verdict_expires_after_its_ttl() {
        let mut verdicts = Verdicts::new(TTL, 10);
        let t0 = Instant::now();
        verdicts.insert("s1", false, None, t0);
        assert_eq!(verdicts.get("s1", t0 + Duration::from_millis(499)), Some(false));
        assert_eq!(verdicts.get("s1", t0 + TTL), None, "asks the store again after the TTL");
        assert_eq!(verdicts.get("s2", t0), None);
    }

    #[test]
    fn a_revoked_verdict_lasts_until_the_token_expires_and_is_never_undone() {
        let mut verdicts = Verdicts::new(TTL, 10);
        let t0 = Instant::now();
        let exp = t0 + Duration::from_secs(900);
        verdicts.insert("s1", true, Some(exp), t0);
        assert_eq!(verdicts.get("s1", t0 + Duration::from_secs(899)), Some(true));
        // A stale "not revoked" read racing the revocation does not undo it.
        verdicts.insert("s1", false, None, t0 + Duration::from_secs(1));
        assert_eq!(verdicts.get("s1", t0 + Duration::from_secs(2)), Some(true));
        // A token of the same session expiring earlier does not shorten it.
        verdicts.insert("s1", true, Some(t0 + Duration::from_secs(10)), t0 + Duration::from_secs(3));
        assert_eq!(verdicts.get("s1", t0 + Duration::from_secs(899)), Some(true));
        assert_eq!(verdicts.get("s1", exp), None);
        // A "not revoked" verdict turns into "revoked" at once.
        verdicts.insert("s2", false, None, t0);
        verdicts.insert("s2", true, Some(exp), t0);
        assert_eq!(verdicts.get("s2", t0), Some(true));
    }

    #[test]
    fn the_map_stays_bounded_and_drops_expired_verdicts_first() {
        let mut verdicts = Verdicts::new(TTL, 100);
        let t0 = Instant::now();
        verdicts.insert("revoked", true, Some(t0 + Duration::from_secs(900)), t0);
        for i in 0..99 {
            verdicts.insert(&format!("old{i}"), false, None, t0);
        }
        assert_eq!(verdicts.len(), 100);
        // Once the old verdicts expired, a new one makes room by dropping them, not the live one.
        let later = t0 + TTL + Duration::from_millis(1);
        verdicts.insert("new", false, None, later);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts.get("revoked", later), Some(true));
        // All live: arbitrary ones go, a tenth at once, and the map never passes its bound.
        for i in 0..10_000 {
            verdicts.insert(&format!("live{i}"), false, None, later);
            assert!(verdicts.len() <= 100, "{} entries", verdicts.len());
        }
        assert_eq!(verdicts.get("live9999", later), Some(false), "the newest is kept");
    }

    #[test]
    fn a_zero_ttl_caches_no_not_revoked_verdict() {
        let mut verdicts = Verdicts::new(Duration::ZERO, 10);
        let t0 = Instant::now();
        verdicts.insert("s1", false, None, t0);
        assert!(verdicts.is_empty());
        verdicts.insert("s2", true, Some(t0 + TTL), t0);
        assert_eq!(verdicts.get("s2", t0), Some(true));
    }

    fn exp_in(secs: u64) -> u64 {
        mesh_core::ids::unix_now() as u64 + secs
    }

    #[tokio::test]
    async fn a_revocation_is_seen_once_the_not_revoked_verdict_expires() {
        let store = Store::memory();
        let lkg = LastKnownGood::new(store.clone(), Duration::from_secs(60));
        let revocations = Revocations::new(lkg, Duration::from_millis(50), 100, Duration::from_secs(5));
        assert_eq!(revocations.revoked("s1", exp_in(900)).await, None);
        store.set(&revoked_key("s1"), "logout", Some(Duration::from_secs(60))).await.unwrap();
        assert_eq!(revocations.revoked("s1", exp_in(900)).await, None, "cached for the TTL");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(revocations.revoked("s1", exp_in(900)).await, Some(Checked::Store));
        // From then on it is known here, even if the marker went away.
        store.delete(&revoked_key("s1")).await.unwrap();
        assert_eq!(revocations.revoked("s1", exp_in(900)).await, Some(Checked::Cache));
    }

    #[tokio::test]
    async fn a_failing_store_fails_open_and_remembers_nothing() {
        let store = Store::memory();
        let lkg = LastKnownGood::new(store.clone(), Duration::from_secs(60));
        let revocations = Revocations::new(lkg.clone(), TTL, 100, Duration::from_secs(5));
        store.set(&revoked_key("s1"), "logout", None).await.unwrap();
        lkg.rest_for_test();
        assert_eq!(revocations.revoked("s1", exp_in(900)).await, None, "fails open");
        assert!(revocations.verdicts().is_empty(), "an unknown verdict is not cached");
    }
}
