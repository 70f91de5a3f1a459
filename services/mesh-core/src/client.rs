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

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tower::retry::budget::{Budget, TpsBudget};
use tracing::Instrument;

use crate::breaker::{Breaker, BreakerConfig, BreakerState};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// How to reach one service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Replica addresses, `http://host:port`. Default: none (set per service).
    pub endpoints: Vec<String>,
    /// Time allowed to open a connection to one replica. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of one call, sent to the server as `grpc-timeout`. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP/2 keep-alive ping interval of the health watch; a replica that misses a ping for
    /// as long again is taken out of the balancer. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub health_keepalive: Duration,
    /// How often endpoint host names are resolved again. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub dns_refresh: Duration,
    /// Calls to this service in flight at once; past it calls fail at once (bulkhead). Default: 256.
    pub max_concurrency: usize,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
}

/// Retries of idempotent calls that failed with UNAVAILABLE (or never reached a replica).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
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
            max_concurrency: 256,
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

/// A channel to one service, balanced over its healthy replicas. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ServiceChannel {
    channel: Channel,
    health: Arc<Health>,
    guard: Arc<Guard>,
}

/// Protection around every call: bulkhead, breaker, retry budget.
struct Guard {
    service: String,
    limit: Arc<tokio::sync::Semaphore>,
    breaker: Breaker,
    budget: TpsBudget,
    max_retries: u32,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("service", &self.service).finish_non_exhaustive()
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
    let guard = Arc::new(Guard {
        service: service.to_owned(),
        limit: Arc::new(tokio::sync::Semaphore::new(cfg.max_concurrency.max(1))),
        breaker: Breaker::new(service, cfg.breaker.clone()),
        // See the router's pool: a hair under the ratio so tower's f32 division lands on the
        // intended whole number of deposits per retry.
        budget: TpsBudget::new(
            cfg.retry.budget_window.clamp(Duration::from_secs(1), Duration::from_secs(60)),
            cfg.retry.budget_min_per_second,
            cfg.retry.budget_ratio * 0.999_99,
        ),
        max_retries: cfg.retry.max_retries,
    });
    Ok(ServiceChannel { channel, health, guard })
}

impl ServiceChannel {
    /// Replicas currently in the balancer.
    pub fn healthy_replicas(&self) -> usize {
        *self.health.healthy.borrow()
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.guard.breaker.state()
    }

    /// The service this channel calls.
    pub fn service(&self) -> &str {
        &self.guard.service
    }
}

/// One configured endpoint: a host name (or address) and port.
#[derive(Debug)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

/// Resolves `target` every `dns_refresh` and keeps one watcher per address it resolves to.
async fn resolve_replicas(
    target: Target,
    cfg: ClientConfig,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    health: Arc<Health>,
) {
    let literal = target.host.parse::<std::net::IpAddr>().is_ok();
    // Dropping a watcher's sender stops it, and it takes its replica out of the balancer.
    let mut watchers: std::collections::HashMap<std::net::SocketAddr, oneshot::Sender<()>> =
        Default::default();
    let mut first = true;
    loop {
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(found) => {
                let mut found: Vec<_> = found.collect();
                // `localhost` and dual-stack names resolve to both families; one server rarely
                // listens on both, so prefer IPv4 when there is any.
                if found.iter().any(|a| a.is_ipv4()) {
                    found.retain(|a| a.is_ipv4());
                }
                watchers.retain(|addr, _| found.contains(addr));
                for addr in found {
                    if watchers.contains_key(&addr) {
                        continue;
                    }
                    let Ok(endpoint) = Endpoint::from_shared(format!("{}://{addr}", target.scheme)) else {
                        continue;
                    };
                    let endpoint = endpoint
                        .connect_timeout(cfg.connect_timeout)
                        .timeout(cfg.request_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30));
                    let (stop, stopped) = oneshot::channel();
                    watchers.insert(addr, stop);
                    health.pending.fetch_add(1, Ordering::AcqRel);
                    let watcher = Replica {
                        key: endpoint.uri().to_string(),
                        endpoint,
                        changes: changes.clone(),
                        health: health.clone(),
                        inserted: false,
                        probed: false,
                    };
                    tokio::spawn(watcher.watch(cfg.health_keepalive, stopped));
                }
            }
            Err(e) => {
                tracing::warn!(host = %target.host, error = %e, "cannot resolve; keeping the replicas known so far")
            }
        }
        if std::mem::take(&mut first) {
            health.settled_one();
        }
        let refresh = if literal { Duration::MAX } else { cfg.dns_refresh };
        tokio::select! {
            () = tokio::time::sleep(refresh) => {}
            () = changes.closed() => return,
        }
    }
}

/// Keeps one replica in the balancer while it reports SERVING, and out of it otherwise.
struct Replica {
    key: String,
    endpoint: Endpoint,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    health: Arc<Health>,
    inserted: bool,
    probed: bool,
}

impl Replica {
    async fn watch(mut self, keepalive: Duration, stopped: oneshot::Receiver<()>) {
        let changes = self.changes.clone();
        tokio::select! {
            () = self.run(keepalive) => {}
            _ = stopped => {}
            () = changes.closed() => {}
        }
        self.set(false).await;
        self.mark_probed();
    }

    async fn run(&mut self, keepalive: Duration) {
        let probe = self
            .endpoint
            .clone()
            .http2_keep_alive_interval(keepalive)
            .keep_alive_timeout(keepalive)
            .keep_alive_while_idle(true)
            .timeout(Duration::MAX);
        let mut backoff = Duration::from_millis(100);
        loop {
            if let Ok(conn) = probe.connect().await
                && let Ok(stream) =
                    HealthClient::new(conn).watch(HealthCheckRequest { service: String::new() }).await
            {
                let mut stream = stream.into_inner();
                while let Ok(Some(update)) = stream.message().await {
                    backoff = Duration::from_millis(100);
                    if !self.set(update.status == ServingStatus::Serving as i32).await {
                        return;
                    }
                    self.mark_probed();
                }
            }
            // Connect failed, the server is gone, or the watch broke (reset, missed keep-alive).
            if !self.set(false).await {
                return;
            }
            self.mark_probed();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Puts the replica in or out of the balancer; false once the balancer is gone.
    async fn set(&mut self, serving: bool) -> bool {
        if serving == self.inserted {
            return true;
        }
        let change = if serving {
            Change::Insert(self.key.clone(), self.endpoint.clone())
        } else {
            Change::Remove(self.key.clone())
        };
        if self.changes.send(change).await.is_err() {
            return false;
        }
        self.inserted = serving;
        self.health.healthy.send_modify(|n| if serving { *n += 1 } else { *n -= 1 });
        if serving {
            tracing::info!(replica = %self.key, "replica healthy: in the balancer");
        } else {
            tracing::warn!(replica = %self.key, "replica unhealthy: out of the balancer");
        }
        metrics::counter!("grpc_client_replica_health_changes_total", "serving" => serving.to_string())
            .increment(1);
        true
    }

    fn mark_probed(&mut self) {
        if !std::mem::replace(&mut self.probed, true) {
            self.health.settled_one();
        }
    }
}

// === impl ServiceChannel ===

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for ServiceChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let health = self.health.clone();
        let guard = self.guard.clone();
        // A client span per call, child of the caller's current span, carried to the server.
        let rpc = request.uri().path().to_owned();
        let span = tracing::info_span!("grpc.client", service = %guard.service, rpc = %rpc);
        crate::trace::inject(&span, request.headers_mut());
        // Take the ready clone, leave a fresh one behind (tower's ready-service contract).
        let fresh = self.channel.clone();
        let channel = std::mem::replace(&mut self.channel, fresh);
        Box::pin(
            async move {
                wait_for_a_replica(&health).await?;
                let _permit = guard.limit.clone().try_acquire_owned().map_err(|_| {
                    metrics::counter!("grpc_client_shed_total", "service" => guard.service.clone())
                        .increment(1);
                    unavailable(format!("too many calls in flight to {}", guard.service))
                })?;
                guard.budget.deposit();
                if is_idempotent(&request) && guard.max_retries > 0 {
                    call_with_retries(channel, &guard, request).await
                } else {
                    call_once(channel, &guard, request).await
                }
            }
            .instrument(span),
        )
    }
}

fn unavailable(message: String) -> BoxError {
    Box::new(tonic::Status::unavailable(message))
}

/// Fails at once when no replica is healthy, after waiting (briefly) for the first probes.
async fn wait_for_a_replica(health: &Health) -> Result<(), BoxError> {
    if *health.healthy.borrow() > 0 {
        return Ok(());
    }
    let mut healthy = health.healthy.subscribe();
    let first_probes = async {
        // Wait while replicas remain unprobed and none is healthy yet.
        let _ = healthy.wait_for(|n| *n > 0 || health.pending.load(Ordering::Acquire) == 0).await;
    };
    let _ = tokio::time::timeout(health.first_probe_wait, first_probes).await;
    if *health.healthy.borrow() == 0 {
        return Err(unavailable("no healthy replica".into()));
    }
    Ok(())
}

/// Reads are idempotent by the mesh's naming convention (`Get…`, `List…`, `Verify…`); any other
/// call opts in with the [`Idempotent`] extension.
fn is_idempotent<B>(request: &http::Request<B>) -> bool {
    let method = request.uri().path().rsplit('/').next().unwrap_or("");
    request.extensions().get::<Idempotent>().is_some()
        || ["Get", "List", "Verify"].iter().any(|prefix| method.starts_with(prefix))
}

/// How a call ended, for the breaker and the retry decision.
enum Ended {
    Ok,
    /// The service answered with an error about the request: not its health.
    Refused,
    /// UNAVAILABLE or no answer: safe to try another replica for an idempotent call.
    Unavailable,
    /// Timed out or failed mid-way.
    Failed,
}

fn classify<B>(result: &Result<http::Response<B>, tonic::transport::Error>) -> Ended {
    let Ok(response) = result else { return Ended::Unavailable };
    match response.headers().get("grpc-status").map(|v| tonic::Code::from_bytes(v.as_bytes())) {
        None | Some(tonic::Code::Ok) => Ended::Ok,
        Some(tonic::Code::Unavailable) => Ended::Unavailable,
        Some(
            tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Internal
            | tonic::Code::Unknown,
        ) => Ended::Failed,
        Some(_) => Ended::Refused,
    }
}

async fn call_once(
    mut channel: Channel,
    guard: &Guard,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    if !guard.breaker.allow() {
        return Err(unavailable(format!("circuit open for {}", guard.service)));
    }
    let result = tower::Service::call(&mut channel, request).await;
    guard.breaker.record(matches!(classify(&result), Ended::Ok | Ended::Refused));
    result.map_err(Into::into)
}

/// Sends an idempotent call, again on UNAVAILABLE while retries and budget allow. The request
/// body (one encoded message for unary calls) is kept to be sent again.
async fn call_with_retries(
    mut channel: Channel,
    guard: &Guard,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| -> BoxError { Box::new(tonic::Status::internal(e.to_string())) })?
        .to_bytes();
    let rebuild = || {
        let mut request =
            http::Request::new(tonic::body::Body::new(http_body_util::Full::new(bytes.clone())));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        request
    };
    let mut retries = 0;
    loop {
        if !guard.breaker.allow() {
            return Err(unavailable(format!("circuit open for {}", guard.service)));
        }
        tower::ServiceExt::ready(&mut channel).await.map_err(|e| -> BoxError { e.into() })?;
        let result = tower::Service::call(&mut channel, rebuild()).await;
        let ended = classify(&result);
        guard.breaker.record(matches!(ended, Ended::Ok | Ended::Refused));
        let again = matches!(ended, Ended::Unavailable) && retries < guard.max_retries;
        if again && guard.budget.withdraw() {
            retries += 1;
            metrics::counter!("grpc_client_retries_total", "service" => guard.service.clone()).increment(1);
            continue;
        }
        return result.map_err(Into::into);
    }
}
