//! Last-known-good answers in the store, through the store tier that fails open
//! ([`mesh_core::store::FailOpen`]: a short timeout per operation, a miss on failure, and a
//! rest after one, so an outage of Redis costs one timeout per second, not one per request).
//!
//! Live answers are remembered with [`LastKnownGood::remember_live`]: a value this gateway
//! already wrote is not written again until `fallback_refresh` has passed, and then off the
//! response path. Writing every successful read was two Redis `SET`s on the hottest route for a
//! value that had not changed. A changed value is written at once, before the answer, so an
//! outage right after a change never answers the value from before it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_core::store::{FailOpen, Store};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Time allowed for one store operation before it counts as a failure (a miss).
pub const DEFAULT_TIMEOUT: Duration = mesh_core::store::failopen::DEFAULT_TIMEOUT;

/// A remembered answer and how old it is.
#[derive(Debug)]
pub struct Snapshot<T> {
    pub value: T,
    pub age: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    value: T,
    /// Unix milliseconds when it was remembered.
    at: u64,
}

/// How often an unchanged live answer is written again by default (its age restarts).
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// Keys whose last write this gateway remembers at most; past it the memory starts over (each
/// key then costs one more write).
const MAX_WRITTEN: usize = 100_000;

/// Last-known-good answers in the store.
#[derive(Clone, Debug)]
pub struct LastKnownGood {
    tier: FailOpen,
    ttl: Duration,
    refresh: Duration,
    written: Arc<Mutex<HashMap<String, Written>>>,
}

/// What this gateway last wrote under a key.
#[derive(Clone, Copy, Debug)]
struct Written {
    /// Hash of the value's JSON.
    hash: u64,
    at: Instant,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn full_key(key: &str) -> String {
    format!("gw:lkg:{key}")
}

// === impl LastKnownGood ===

impl LastKnownGood {
    /// Snapshots live `ttl` (bounded staleness); each store operation gets [`DEFAULT_TIMEOUT`].
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self {
            tier: store.fail_open("last-known-good"),
            ttl,
            refresh: DEFAULT_REFRESH,
            written: Arc::default(),
        }
    }

    /// Writes an unchanged live answer again at most once per `refresh` (`0s`: every time).
    pub fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Bounds each store operation by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.tier = self.tier.with_timeout(timeout);
        self
    }

    /// How long a snapshot lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Remembers `value` under `key`; returns whether the store took it. A store error is logged
    /// and otherwise ignored.
    pub async fn remember<T: Serialize>(&self, key: &str, value: &T) -> bool {
        // Whatever this gateway wrote there before is no longer what the store holds.
        self.written().remove(key);
        self.write(key, value).await
    }

    /// Remembers a live answer under `key`: at once when it differs from what this gateway last
    /// wrote there, in the background when it is the same but older than `refresh`, and not at
    /// all otherwise. Returns whether the store holds the value (as far as this gateway knows).
    pub async fn remember_live<T: Serialize>(&self, key: &str, value: &T) -> bool {
        let Ok(json) = serde_json::to_vec(value) else {
            return false;
        };
        self.remember_live_json(key, &json, value).await
    }

    /// [`Self::remember_live`] for a value already serialised as `json` (the answer's body), so
    /// the hot path serialises it once.
    pub async fn remember_live_json<T: Serialize>(&self, key: &str, json: &[u8], value: &T) -> bool {
        let hash = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            json.hash(&mut hasher);
            hasher.finish()
        };
        let now = Instant::now();
        let last = self.written().get(key).copied();
        match last {
            Some(w) if w.hash == hash && now.duration_since(w.at) < self.refresh => true,
            Some(w) if w.hash == hash => {
                // Same value, written a while ago: refresh it off the response path. The old
                // write still serves an outage meanwhile.
                self.note_written(key, hash, now);
                let this = self.clone();
                let key = key.to_owned();
                let value = serde_json::value::to_value(value).unwrap_or_default();
                tokio::spawn(async move {
                    if !this.write(&key, &value).await {
                        this.written().remove(&key);
                    }
                });
                true
            }
            _ => {
                let stored = self.write(key, value).await;
                if stored {
                    self.note_written(key, hash, now);
                }
                stored
            }
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_written(&self, key: &str, hash: u64, at: Instant) {
        let mut written = self.written();
        if written.len() >= MAX_WRITTEN && !written.contains_key(key) {
            written.clear();
        }
        written.insert(key.to_owned(), Written { hash, at });
    }

    async fn write<T: Serialize>(&self, key: &str, value: &T) -> bool {
        let stored = Stored { value, at: now_millis() };
        let full = full_key(key);
        self.tier.run("remember", self.tier.store().set_json(&full, &stored, Some(self.ttl))).await.is_some()
    }

    /// The answer last remembered under `key`, if any and if the store answers.
    pub async fn recall<T: DeserializeOwned>(&self, key: &str) -> Option<Snapshot<T>> {
        let full = full_key(key);
        let stored = self.tier.run("recall", self.tier.store().get_json::<Stored<T>>(&full)).await??;
        Some(Snapshot {
            value: stored.value,
            age: Duration::from_millis(now_millis().saturating_sub(stored.at)),
        })
    }

    /// The raw value of `key`, a key outside the snapshot family that another component writes
    /// (auth's revoked-session markers), through the same guard: `None` when the store failed or
    /// rests, `Some(None)` when the key is absent.
    pub async fn peek(&self, key: &str) -> Option<Option<String>> {
        self.tier.run("peek", self.tier.store().get(key)).await
    }

    /// Drops what is remembered under `key`; returns whether the store answered.
    pub async fn forget(&self, key: &str) -> bool {
        self.written().remove(key);
        self.tier.run("forget", self.tier.store().delete(&full_key(key))).await.is_some()
    }

    /// Makes the tier rest as if the store had just failed, for tests of what fails open.
    #[cfg(test)]
    pub(crate) fn rest_for_test(&self) {
        self.tier.rest_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_answers_come_back_with_their_age() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        assert!(lkg.recall::<String>("users/me:u1").await.is_none());
        assert!(lkg.remember("users/me:u1", &"ada".to_string()).await);
        let snapshot = lkg.recall::<String>("users/me:u1").await.unwrap();
        assert_eq!(snapshot.value, "ada");
        assert!(snapshot.age < Duration::from_secs(1));
        assert!(lkg.recall::<String>("users/me:u2").await.is_none(), "never crosses keys");
        assert!(lkg.forget("users/me:u1").await);
        assert!(lkg.recall::<String>("users/me:u1").await.is_none());
    }

    #[tokio::test]
    async fn an_unchanged_live_answer_is_written_once_per_refresh_and_a_changed_one_at_once() {
        let store = Store::memory();
        let lkg = LastKnownGood::new(store.clone(), Duration::from_secs(60))
            .with_refresh(Duration::from_secs(3600));
        assert!(lkg.remember_live("users/me:u1", &"ada").await);
        let first = lkg.recall::<String>("users/me:u1").await.unwrap();

        // Someone else's write (another gateway) is not overwritten by an unchanged answer here.
        store.delete(&full_key("users/me:u1")).await.unwrap();
        assert!(lkg.remember_live("users/me:u1", &"ada").await);
        assert!(
            lkg.recall::<String>("users/me:u1").await.is_none(),
            "the unchanged value was not written again"
        );

        assert!(lkg.remember_live("users/me:u1", &"ada lovelace").await);
        assert_eq!(
            lkg.recall::<String>("users/me:u1").await.unwrap().value,
            "ada lovelace",
            "a change is written at once"
        );
        assert_eq!(first.value, "ada");

        // With no refresh interval every answer is written, as before.
        let every = LastKnownGood::new(store.clone(), Duration::from_secs(60)).with_refresh(Duration::ZERO);
        assert!(every.remember_live("k", &1).await);
        store.delete(&full_key("k")).await.unwrap();
        assert!(every.remember_live("k", &1).await);
        let deadline = Instant::now() + Duration::from_secs(5);
        while every.recall::<u64>("k").await.is_none() {
            assert!(Instant::now() < deadline, "the background refresh never landed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_value_of_another_shape_is_a_miss() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        lkg.remember("k", &"text").await;
        assert!(lkg.recall::<u64>("k").await.is_none());
        assert!(lkg.remember("k2", &1).await, "a corrupt value says nothing about the store's health");
    }
}
