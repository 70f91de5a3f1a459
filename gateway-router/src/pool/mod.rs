//! A pool of gateway instances: who is eligible, and which one gets the next request.
//!
//! # Layout
//! - [`health`]: each [`Instance`]: eligibility, passive ejection, probes, the ejection floor.
//! - [`balance`]: power of two choices over eligible instances.
//! - [`budget`]: the retry budget.
//! - [`counters`]: the answer metrics of a pool, registered once.
//! - here: the [`Pool`] itself, its membership and its admission permits (requests, streams,
//!   uploads), each a budget of its own.

pub mod balance;
pub mod budget;
pub mod counters;
pub mod health;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::retry::budget::TpsBudget;

pub use self::counters::Counters;
pub use self::health::{InFlight, Instance, InstanceStatus, Outcome, Verdict};
use crate::config::{Config, HealthConfig};

/// A pool: its instances, its own connection pool and concurrency limit, its retry budget.
pub struct Pool {
    pub name: String,
    instances: RwLock<Arc<Vec<Arc<Instance>>>>,
    limit: Arc<Semaphore>,
    pub max_concurrency: usize,
    /// Long streams have a budget of their own, so they never fill the request slots.
    streams: Arc<Semaphore>,
    pub max_streams: usize,
    /// Requests whose body streams through (large or of unknown size) likewise.
    uploads: Arc<Semaphore>,
    /// Held while deciding an ejection, so two at once cannot both pass the floor.
    ejecting: Mutex<()>,
    budget: TpsBudget,
    pub retries: AtomicU64,
    pub retries_refused: AtomicU64,
    /// Each pool has its own connections, so one pool's trouble never queues another's requests.
    pub client: Client<HttpConnector, Body>,
    pub health: HealthConfig,
    /// Its answers' metrics.
    pub counters: Counters,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("name", &self.name).finish_non_exhaustive()
    }
}

// === impl Pool ===

impl Pool {
    pub fn new(name: &str, limits: &crate::config::Pool, cfg: &Config) -> Self {
        let max_concurrency = limits.max_concurrency;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        Self {
            name: name.to_owned(),
            instances: RwLock::default(),
            limit: Arc::new(Semaphore::new(max_concurrency)),
            max_concurrency,
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            max_streams: limits.max_streams,
            uploads: Arc::new(Semaphore::new(limits.max_uploads)),
            ejecting: Mutex::new(()),
            budget: budget::of(&cfg.retry),
            retries: AtomicU64::new(0),
            retries_refused: AtomicU64::new(0),
            client,
            health: cfg.health.clone(),
            counters: Counters::new(name, &cfg.status),
        }
    }

    pub fn instances(&self) -> Arc<Vec<Arc<Instance>>> {
        self.instances.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the instance set, keeping the state of instances that remain.
    pub fn set_addresses(&self, addrs: Vec<(SocketAddr, String)>) {
        let current = self.instances();
        let next: Vec<Arc<Instance>> = addrs
            .into_iter()
            .map(|(addr, source)| {
                current
                    .iter()
                    .find(|i| i.addr == addr)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Instance::new(addr, source, &self.health)))
            })
            .collect();
        if next.len() != current.len() || next.iter().zip(current.iter()).any(|(a, b)| a.addr != b.addr) {
            tracing::info!(pool = %self.name, instances = ?next.iter().map(|i| i.addr).collect::<Vec<_>>(), "pool membership");
        }
        *self.instances.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
    }

    /// A permit to run one request in this pool, or `None` when it is at capacity.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        self.limit.clone().try_acquire_owned().ok()
    }

    pub fn in_flight(&self) -> usize {
        self.max_concurrency - self.limit.available_permits()
    }

    /// A permit to hold one long stream open, or `None` when the stream budget is spent.
    pub fn admit_stream(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }

    /// A permit for one request whose body streams through, or `None` when the upload budget
    /// is spent.
    pub fn admit_upload(&self) -> Option<OwnedSemaphorePermit> {
        self.uploads.clone().try_acquire_owned().ok()
    }

    pub fn streams_open(&self) -> usize {
        self.max_streams - self.streams.available_permits()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pool_with(n: u16, cfg: &Config) -> Pool {
        let pool = Pool::new("p", &crate::config::Pool::of(vec![]), cfg);
        pool.set_addresses(
            (0..n).map(|i| (SocketAddr::from(([127, 0, 0, 1], 1000 + i)), format!("i{i}"))).collect(),
        );
        pool
    }

    pub(crate) fn pool(n: u16) -> Pool {
        pool_with(n, &Config::default())
    }

    #[tokio::test]
    async fn the_stream_budget_is_apart_from_the_request_slots() {
        let limits =
            crate::config::Pool { max_concurrency: 2, max_streams: 1, ..crate::config::Pool::of(vec![]) };
        let pool = Pool::new("p", &limits, &Config::default());
        let stream = pool.admit_stream().unwrap();
        assert!(pool.admit_stream().is_none(), "stream budget spent");
        let (a, b) = (pool.admit(), pool.admit());
        assert!(a.is_some() && b.is_some(), "request slots untouched by streams");
        drop(stream);
        assert!(pool.admit_stream().is_some());
    }
}
