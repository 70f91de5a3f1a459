//! Last-known-good answers in the store, through the store tier that fails open
//! ([`mesh_core::store::FailOpen`]: a short timeout per operation, a miss on failure, and a
//! rest after one, so an outage of Redis costs one timeout per second, not one per request).

use std::time::Duration;

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

/// Last-known-good answers in the store.
#[derive(Clone, Debug)]
pub struct LastKnownGood {
    tier: FailOpen,
    ttl: Duration,
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
        Self { tier: store.fail_open("last-known-good"), ttl }
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
    async fn a_value_of_another_shape_is_a_miss() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        lkg.remember("k", &"text").await;
        assert!(lkg.recall::<u64>("k").await.is_none());
        assert!(lkg.remember("k2", &1).await, "a corrupt value says nothing about the store's health");
    }
}
