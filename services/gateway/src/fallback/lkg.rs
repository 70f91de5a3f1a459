//! Last-known-good answers in the store, a tier that fails open.
//!
//! Every operation is bounded by a short timeout, and a store failure is a miss (or a write not
//! made), never a failed request. After a failure the store is left alone for [`BACKOFF`]: every
//! operation in that time is a miss at once, so an outage of Redis costs one timeout per second
//! rather than one per request, and the tier tries again by itself when Redis is back.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_core::store::{Store, StoreError, StoreResult};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Time allowed for one store operation before it counts as a failure (a miss). Redis answers in
/// well under a millisecond; the default leaves room for a loaded machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long the store is left alone after it failed.
pub const BACKOFF: Duration = Duration::from_secs(1);

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
    store: Store,
    ttl: Duration,
    timeout: Duration,
    /// Until when the store is skipped after a failure (shared by every clone).
    resting_until: Arc<Mutex<Option<Instant>>>,
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
        Self { store, ttl, timeout: DEFAULT_TIMEOUT, resting_until: Arc::default() }
    }

    /// Bounds each store operation by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
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
        self.guard("remember", key, self.store.set_json(&full, &stored, Some(self.ttl))).await.is_some()
    }

    /// The answer last remembered under `key`, if any and if the store answers.
    pub async fn recall<T: DeserializeOwned>(&self, key: &str) -> Option<Snapshot<T>> {
        let full = full_key(key);
        let stored = self.guard("recall", key, self.store.get_json::<Stored<T>>(&full)).await??;
        Some(Snapshot {
            value: stored.value,
            age: Duration::from_millis(now_millis().saturating_sub(stored.at)),
        })
    }

    /// The raw value of `key`, a key outside the snapshot family that another component writes
    /// (auth's revoked-session markers), through the same guard: `None` when the store failed or
    /// rests, `Some(None)` when the key is absent.
    pub async fn peek(&self, key: &str) -> Option<Option<String>> {
        self.guard("peek", key, self.store.get(key)).await
    }

    /// Drops what is remembered under `key`; returns whether the store answered.
    pub async fn forget(&self, key: &str) -> bool {
        self.guard("forget", key, self.store.delete(&full_key(key))).await.is_some()
    }

    /// Makes the tier rest as if the store had just failed, for tests of what fails open.
    #[cfg(test)]
    pub(crate) fn rest_for_test(&self) {
        self.rest("test", "-", "rested by a test");
    }

    fn resting(&self) -> bool {
        let mut until = self.resting_until.lock().unwrap_or_else(|p| p.into_inner());
        match *until {
            Some(t) if Instant::now() < t => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn rest(&self, op: &'static str, key: &str, error: &str) {
        let mut until = self.resting_until.lock().unwrap_or_else(|p| p.into_inner());
        let already = until.is_some();
        *until = Some(Instant::now() + BACKOFF);
        drop(until);
        metrics::counter!("gateway_snapshot_store_errors_total", "op" => op).increment(1);
        if !already {
            tracing::warn!(
                op,
                key,
                error,
                backoff_ms = BACKOFF.as_millis() as u64,
                "snapshot store failed; serving without it for a while"
            );
        }
    }

    /// Runs one store operation within the timeout; `None` when the store failed or rests.
    async fn guard<R>(
        &self,
        op: &'static str,
        key: &str,
        operation: impl Future<Output = StoreResult<R>>,
    ) -> Option<R> {
        if self.resting() {
            metrics::counter!("gateway_snapshot_store_skipped_total", "op" => op).increment(1);
            return None;
        }
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Some(value),
            // A value of another shape (an older version wrote it): a miss, the store is fine.
            Ok(Err(StoreError::Corrupt(e))) => {
                tracing::debug!(op, key, error = %e, "unreadable snapshot; treating it as absent");
                None
            }
            Ok(Err(e)) => {
                self.rest(op, key, &e.to_string());
                None
            }
            Err(_) => {
                self.rest(op, key, "timed out");
                None
            }
        }
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
        assert!(!lkg.resting(), "a corrupt value says nothing about the store's health");
    }

    #[tokio::test]
    async fn a_failing_store_is_a_miss_and_is_left_alone_for_a_while() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60))
            .with_timeout(Duration::from_millis(20));
        let failed =
            lkg.guard("recall", "k", async { Err::<(), _>(StoreError::Unavailable("down".into())) }).await;
        assert!(failed.is_none());
        assert!(lkg.resting());
        // While resting, the operation is not even started.
        let polled = std::sync::atomic::AtomicBool::new(false);
        let skipped = lkg
            .guard("recall", "k", async {
                polled.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(skipped.is_none() && !polled.load(std::sync::atomic::Ordering::SeqCst));
        // A hung store times out the same way, and the tier recovers once the backoff ends.
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60))
            .with_timeout(Duration::from_millis(20));
        let hung = lkg.guard("recall", "k", std::future::pending::<StoreResult<()>>()).await;
        assert!(hung.is_none() && lkg.resting());
        *lkg.resting_until.lock().unwrap() = Some(Instant::now());
        assert!(lkg.remember("k", &1).await, "tries the store again after the backoff");
    }
}
