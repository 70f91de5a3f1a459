//! Login lockouts a gateway has seen in the store, remembered until they end, so a flood of
//! guesses against a locked key is refused without a store round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Locks this gateway has seen in the store, so that a key known to be locked is refused without
/// a store round trip: a flood of guesses against a locked account or from a locked address
/// then costs the gateway next to nothing per refusal (the store is still the one truth; this
/// only remembers its answers until they run out). Bounded in entries.
#[derive(Debug, Default)]
pub struct SeenLocks {
    until: Mutex<HashMap<String, Instant>>,
}

/// Keys remembered at most; past it, expired ones go, then everything (it is only a cache).
const MAX_SEEN_LOCKS: usize = 100_000;
/// How long a sighting of another attempt's turn is trusted: it ends within a hash.
pub(crate) const TURN_SEEN_FOR: Duration = Duration::from_millis(100);

impl SeenLocks {
    pub(crate) fn locked_for(&self, key: &str) -> Option<Duration> {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        until.get(key).and_then(|t| t.checked_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }

    pub(crate) fn note(&self, key: &str, wait: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if until.len() >= MAX_SEEN_LOCKS {
            let now = Instant::now();
            until.retain(|_, t| *t > now);
            if until.len() >= MAX_SEEN_LOCKS {
                until.clear();
            }
        }
        until.insert(key.to_owned(), Instant::now() + wait);
    }
}
