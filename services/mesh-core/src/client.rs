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
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// How to reach one service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            health_keepalive: Duration::from_secs(1),
            dns_refresh: Duration::from_secs(5),
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
}

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

/// A lazy channel balanced over the healthy replicas of `cfg`. Must be called inside a Tokio
/// runtime: it spawns a resolver per endpoint and a health watcher per resolved address, which
/// end when the channel is dropped.
pub fn balanced_channel(cfg: &ClientConfig) -> Result<ServiceChannel, ClientError> {
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
    Ok(ServiceChannel { channel, health })
}

impl ServiceChannel {
    /// Replicas currently in the balancer.
    pub fn healthy_replicas(&self) -> usize {
        *self.health.healthy.borrow()
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

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let health = self.health.clone();
        // Take the ready clone, leave a fresh one behind (tower's ready-service contract).
        let fresh = self.channel.clone();
        let mut channel = std::mem::replace(&mut self.channel, fresh);
        Box::pin(async move {
            if *health.healthy.borrow() == 0 {
                let mut healthy = health.healthy.subscribe();
                let first_probes = async {
                    // Wait while replicas remain unprobed and none is healthy yet.
                    let _ = healthy.wait_for(|n| *n > 0 || health.pending.load(Ordering::Acquire) == 0).await;
                };
                let _ = tokio::time::timeout(health.first_probe_wait, first_probes).await;
                if *health.healthy.borrow() == 0 {
                    return Err(Box::new(tonic::Status::unavailable("no healthy replica")) as BoxError);
                }
            }
            tower::Service::call(&mut channel, request).await.map_err(Into::into)
        })
    }
}
