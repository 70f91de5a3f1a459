//! The store tier that fails open: the one wrapper every non-essential use of the store goes
//! through (last-known-good snapshots and the response cache, queue lookups, the router's
//! shared rate limit, the login throttle).
//!
//! Every operation is bounded by a short timeout, and a failure is a miss (or a write not
//! made), never a failed request. After a failure the store is left alone for a rest: every
//! operation of that tier in that time is a miss at once, so an outage of Redis costs one
//! timeout per rest rather than one per request, and the tier tries again by itself when Redis
//! is back. Apollo Router's Redis cache tier is the model. Where losing the store must refuse
//! instead (the durable order queue), callers use the [`Store`] directly and answer 503.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Store, StoreError, StoreResult};

/// Time allowed for one operation before it counts as a failure (a miss). Redis answers in well
/// under a millisecond; the default leaves room for a loaded machine.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long a tier leaves the store alone after a failure.
pub const DEFAULT_REST: Duration = Duration::from_secs(1);

/// Until when each tier of one store rests; shared by every clone of the store.
pub(super) type Rests = Arc<Mutex<HashMap<&'static str, Instant>>>;

/// One tier's fail-open view of a store.
#[derive(Clone, Debug)]
pub struct FailOpen {
    store: Store,
    tier: &'static str,
    timeout: Duration,
    rest: Duration,
}

impl FailOpen {
    pub(super) fn new(store: Store, tier: &'static str) -> Self {
        Self { store, tier, timeout: DEFAULT_TIMEOUT, rest: DEFAULT_REST }
    }

    /// Bounds each operation by `timeout` instead.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Rests `rest` after a failure instead.
    pub fn with_rest(mut self, rest: Duration) -> Self {
        self.rest = rest;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the tier is resting after a failure (its operations miss at once).
    pub fn resting(&self) -> bool {
        let rests = self.store.rests().lock().unwrap_or_else(|p| p.into_inner());
        rests.get(self.tier).is_some_and(|until| *until > Instant::now())
    }

    /// Runs `operation` (`what` names it in logs): its value, or `None` when the tier rests,
    /// the operation fails or it takes longer than the timeout. A failure starts a rest.
    pub async fn run<T>(
        &self,
        what: &'static str,
        operation: impl Future<Output = StoreResult<T>>,
    ) -> Option<T> {
        if self.resting() {
            metrics::counter!("store_fail_open_total", "tier" => self.tier, "result" => "resting")
                .increment(1);
            return None;
        }
        let failure = match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => return Some(value),
            // A value of another shape (an older version wrote it): a miss; the store is fine.
            Ok(Err(StoreError::Corrupt(e))) => {
                tracing::debug!(tier = self.tier, what, error = %e, "unreadable value; treating it as absent");
                return None;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("timed out after {:?}", self.timeout),
        };
        metrics::counter!("store_fail_open_total", "tier" => self.tier, "result" => "failed").increment(1);
        tracing::warn!(tier = self.tier, what, error = %failure, rest = ?self.rest, "store unavailable; failing open");
        self.rest_now();
        None
    }

    /// Starts a rest as if the store had just failed.
    pub fn rest_now(&self) {
        let until = Instant::now() + self.rest;
        self.store.rests().lock().unwrap_or_else(|p| p.into_inner()).insert(self.tier, until);
    }

    /// Ends a rest early (tests of recovery).
    pub fn wake(&self) {
        self.store.rests().lock().unwrap_or_else(|p| p.into_inner()).remove(self.tier);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_failing_store_is_a_miss_and_is_left_alone_for_a_rest() {
        let store = Store::memory();
        let tier = store.fail_open("t").with_timeout(Duration::from_millis(20));
        assert_eq!(tier.run("get", async { Ok(7) }).await, Some(7));
        let failed = tier.run("get", async { Err::<(), _>(StoreError::Unavailable("down".into())) }).await;
        assert!(failed.is_none() && tier.resting());
        assert!(store.fail_open("t").resting(), "every view of the tier shares its rest");
        assert!(!store.fail_open("other").resting(), "tiers rest apart");
        // While resting, the operation is not even started.
        let polled = AtomicBool::new(false);
        let skipped = tier
            .run("get", async {
                polled.store(true, Ordering::SeqCst);
                Ok(())
            })
            .await;
        assert!(skipped.is_none() && !polled.load(Ordering::SeqCst));
        // A hung store times out the same way, and the tier tries again after its rest.
        tier.wake();
        let hung = tier.run("get", std::future::pending::<StoreResult<()>>()).await;
        assert!(hung.is_none() && tier.resting());
        tier.wake();
        assert_eq!(tier.run("get", async { Ok(1) }).await, Some(1));
    }

    #[tokio::test]
    async fn a_corrupt_value_is_a_miss_that_says_nothing_of_the_stores_health() {
        let tier = Store::memory().fail_open("t");
        assert!(tier.run("get", async { Err::<(), _>(StoreError::Corrupt("x".into())) }).await.is_none());
        assert!(!tier.resting());
    }
}
