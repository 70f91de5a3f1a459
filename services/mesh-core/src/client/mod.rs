//! gRPC client channels to a service's replicas, balanced over the healthy ones only.
//!
//! tonic's balance channel (tower's p2c) on a fixed list keeps choosing a replica that died,
//! so here every replica is watched over `grpc.health.v1` (`Watch` on the server's overall
//! status, with HTTP/2 keep-alive so a hung process is noticed too) and inserted into or removed
//! from the balancer as its health changes. A draining replica says NOT_SERVING before it stops
//! accepting, so it leaves the balancer before its listener closes.
//!
//! Each configured endpoint's host is resolved again every `dns_refresh`, and every address
//! it resolves to is a replica: a Kubernetes headless Service name yields one replica per ready
//! pod, and pods that come and go join and leave the balancer.
//!
//! With no healthy replica a call fails at once with UNAVAILABLE instead of waiting in the
//! balancer's queue for an endpoint that may never come (the black hole of an empty balancer).
//! Until every replica has been probed once, a call waits (at most the connect timeout) for the
//! first healthy one, so a caller starting beside its services does not fail its first calls.
//!
//! # Layout
//! - this module: [`ClientConfig`], [`ServiceChannel`], and [`service_channel`], where each
//!   call's stack is built, a layer at a time, with the reason for each.
//! - `layers`: the client span, fail fast, the bulkhead (shed) and the circuit breaker, each a
//!   `Layer`/`Service` pair.
//! - `retry`: budgeted retries of idempotent calls, read from the call's `Fault`.
//! - `replicas`: resolving endpoints and watching each replica's health.

mod layers;
mod replicas;
pub(crate) mod retry;

use self::layers::{
    BoxError, BoxFuture, CircuitLayer, FailFastLayer, Request, Response, ShedLayer, TracedLayer,
};
use self::replicas::{Target, resolve_replicas};
use self::retry::{RetryLayer, RetryPolicy};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::transport::Channel;
use tower::retry::budget::TpsBudget;
use tower::util::BoxCloneSyncService;

use crate::breaker::{Breaker, BreakerConfig, BreakerState};

/// How to reach one service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Replica addresses, `http://host:port`. Default: none (set per service).
    pub endpoints: Vec<String>,
    /// Time allowed to open a connection to one replica. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub connect_timeout: Duration,
    /// Deadline of one call, sent to the server as `grpc-timeout`. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval of the health watch; a replica that misses a ping for
    /// as long again is taken out of the balancer. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub health_keepalive: Duration,
    /// How often endpoint host names are resolved again. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub dns_refresh: Duration,
    /// Calls to this service in flight at once; past it calls fail at once (bulkhead). Default:
    /// 1024, a gateway's own request limit: one call per request in flight never sheds.
    pub max_concurrency: usize,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

/// Retries of idempotent calls that failed with UNAVAILABLE (or never reached a replica).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Retries per call. Default: 1.
    pub max_retries: u32,
    /// Retries as a share of recent calls. Default: 0.2.
    pub budget_ratio: f32,
    /// Retries per second allowed whatever the traffic. Default: 5.
    pub budget_min_per_second: u32,
    /// How long a call counts towards the budget. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub budget_window: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 1,
            budget_ratio: 0.2,
            budget_min_per_second: 5,
            budget_window: Duration::from_secs(10),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            health_keepalive: Duration::from_secs(1),
            dns_refresh: Duration::from_secs(5),
            max_concurrency: 1024,
            breaker: BreakerConfig::default(),
            retry: RetryConfig::default(),
        }
    }
}

impl ClientConfig {
    /// A config reaching the given replicas with default timeouts.
    pub fn to(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { endpoints: endpoints.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints configured")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
}

/// A channel to one service, balanced over its healthy replicas, through the layers built in
/// [`service_channel`]. Cheap to clone.
#[derive(Clone)]
pub struct ServiceChannel {
    stack: BoxCloneSyncService<Request, Response, BoxError>,
    health: Arc<Health>,
    breaker: Arc<Breaker>,
    service: Arc<str>,
}

impl std::fmt::Debug for ServiceChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceChannel").field("service", &self.service).finish_non_exhaustive()
    }
}

/// Marks a request as safe to send twice, beyond the read methods recognised by name.
#[derive(Clone, Copy, Debug)]
pub struct Idempotent;

/// What the watchers know, shared with every clone of the channel.
#[derive(Debug)]
struct Health {
    /// Number of replicas currently in the balancer.
    healthy: watch::Sender<usize>,
    /// Resolutions and first probes still to come; calls wait for them while nothing is healthy.
    pending: AtomicUsize,
    /// How long a call may wait for the first probe results.
    first_probe_wait: Duration,
}

impl Health {
    fn settled_one(&self) {
        self.pending.fetch_sub(1, Ordering::AcqRel);
        self.healthy.send_modify(|_| {});
    }
}

/// [`service_channel`] for a service named after its first endpoint.
pub fn balanced_channel(cfg: &ClientConfig) -> Result<ServiceChannel, ClientError> {
    let name = cfg.endpoints.first().cloned().unwrap_or_default();
    service_channel(&name, cfg)
}

/// A lazy channel to `service`, balanced over the healthy replicas of `cfg` and guarded by a
/// bulkhead, a circuit breaker and a retry budget. Must be called inside a Tokio runtime: it
/// spawns a resolver per endpoint and a health watcher per resolved address, which end when the
/// channel is dropped.
pub fn service_channel(service: &str, cfg: &ClientConfig) -> Result<ServiceChannel, ClientError> {
    if cfg.endpoints.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    let targets = cfg
        .endpoints
        .iter()
        .map(|uri| {
            let invalid =
                |reason: &str| ClientError::InvalidEndpoint { endpoint: uri.clone(), reason: reason.into() };
            let parsed: http::Uri =
                uri.parse().map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
            let scheme = parsed.scheme_str().unwrap_or("http").to_owned();
            let host = parsed.host().ok_or_else(|| invalid("no host"))?.trim_matches(['[', ']']).to_owned();
            let port = parsed.port_u16().ok_or_else(|| invalid("no port"))?;
            Ok(Target { scheme, host, port })
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    let (channel, changes) = Channel::balance_channel::<String>(64);
    let health = Arc::new(Health {
        healthy: watch::Sender::new(0),
        pending: AtomicUsize::new(targets.len()),
        first_probe_wait: cfg.connect_timeout,
    });
    for target in targets {
        tokio::spawn(resolve_replicas(target, cfg.clone(), changes.clone(), health.clone()));
    }
    let service: Arc<str> = service.into();
    let breaker = Arc::new(Breaker::new(&service, cfg.breaker.clone()));
    let retries = RetryPolicy {
        service: service.clone(),
        // See the router's pool: a hair under the ratio so tower's f32 division lands on the
        // intended whole number of deposits per retry.
        budget: TpsBudget::new(
            cfg.retry.budget_window.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            cfg.retry.budget_min_per_second,
            cfg.retry.budget_ratio * 0.999_99,
        ),
        max_retries: cfg.retry.max_retries,
    };
    let limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrency.max(1)));
    let stack = tower::ServiceBuilder::new()
        // A client span per call, child of the caller's, carried to the server as trace
        // context; every layer below runs inside it.
        .layer(TracedLayer(service.clone()))
        // No healthy replica: fail at once rather than wait in an empty balancer's queue.
        .layer(FailFastLayer(health.clone()))
        // Bulkhead: past `max_concurrency` calls in flight, shed at once rather than queue.
        .layer(ShedLayer { limit, service: service.clone() })
        // Idempotent calls once more on another replica, within the retry budget and what
        // remains of the deadline; never after a timeout (the fault says where to retry).
        .layer(RetryLayer(Arc::new(retries)))
        // Each attempt: refused while the circuit is open, its outcome fed to the breaker.
        .layer(CircuitLayer { breaker: breaker.clone(), service: service.clone() })
        .service(channel);
    Ok(ServiceChannel { stack: BoxCloneSyncService::new(stack), health, breaker, service })
}

impl ServiceChannel {
    /// Replicas currently in the balancer.
    pub fn healthy_replicas(&self) -> usize {
        *self.health.healthy.borrow()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// The service this channel calls.
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl tower::Service<Request> for ServiceChannel {
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        self.stack.call(request)
    }
}
