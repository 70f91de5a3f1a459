//! gRPC client channels to a service's replicas, balanced over the healthy ones only.
//!
//! tonic's balance channel (tower's p2c) on a fixed list keeps choosing a replica that died,
//! so here every replica is watched over `grpc.health.v1` (`Watch` on the server's overall
//! status, with HTTP/2 keep-alive so a hung process is noticed too) and inserted into or removed
//! from the balancer as its health changes. A draining replica says NOT_SERVING before it stops
//! accepting, so it leaves the balancer before its listener closes.
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
use tokio::sync::{mpsc, watch};
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
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            health_keepalive: Duration::from_secs(1),
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
    /// Replicas not yet probed once.
    unprobed: AtomicUsize,
    /// How long a call may wait for the first probe results.
    first_probe_wait: Duration,
}

/// A lazy channel balanced over the healthy endpoints of `cfg`. Must be called inside a Tokio
/// runtime: it spawns one health watcher per replica, which ends when the channel is dropped.
pub fn balanced_channel(cfg: &ClientConfig) -> Result<ServiceChannel, ClientError> {
    if cfg.endpoints.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    let endpoints = cfg
        .endpoints
        .iter()
        .map(|uri| {
            Endpoint::from_shared(uri.clone())
                .map(|e| {
                    e.connect_timeout(cfg.connect_timeout)
                        .timeout(cfg.request_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                })
                .map_err(|e| ClientError::InvalidEndpoint { endpoint: uri.clone(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (channel, changes) = Channel::balance_channel::<String>(endpoints.len().max(1) * 2);
    let health = Arc::new(Health {
        healthy: watch::Sender::new(0),
        unprobed: AtomicUsize::new(endpoints.len()),
        first_probe_wait: cfg.connect_timeout,
    });
    for endpoint in endpoints {
        tokio::spawn(watch_replica(endpoint, changes.clone(), health.clone(), cfg.health_keepalive));
    }
    Ok(ServiceChannel { channel, health })
}

impl ServiceChannel {
    /// Replicas currently in the balancer.
    pub fn healthy_replicas(&self) -> usize {
        *self.health.healthy.borrow()
    }
}

/// Keeps one replica in the balancer while it reports SERVING, and out of it otherwise.
async fn watch_replica(
    endpoint: Endpoint,
    changes: mpsc::Sender<Change<String, Endpoint>>,
    health: Arc<Health>,
    keepalive: Duration,
) {
    let key = endpoint.uri().to_string();
    let probe = endpoint
        .clone()
        .http2_keep_alive_interval(keepalive)
        .keep_alive_timeout(keepalive)
        .keep_alive_while_idle(true)
        .timeout(Duration::MAX);
    let mut inserted = false;
    let mut first = true;
    let mut backoff = Duration::from_millis(100);
    let watching = async {
        loop {
            let serving = async |serving: bool, inserted: &mut bool| -> bool {
                if serving == *inserted {
                    return true;
                }
                let change = if serving {
                    Change::Insert(key.clone(), endpoint.clone())
                } else {
                    Change::Remove(key.clone())
                };
                if changes.send(change).await.is_err() {
                    return false;
                }
                *inserted = serving;
                health.healthy.send_modify(|n| if serving { *n += 1 } else { *n -= 1 });
                if serving {
                    tracing::info!(replica = %key, "replica healthy: in the balancer");
                } else {
                    tracing::warn!(replica = %key, "replica unhealthy: out of the balancer");
                }
                metrics::counter!("grpc_client_replica_health_changes_total", "serving" => serving.to_string())
                    .increment(1);
                true
            };
            if let Ok(conn) = probe.connect().await {
                let stream =
                    HealthClient::new(conn).watch(HealthCheckRequest { service: String::new() }).await;
                if let Ok(stream) = stream {
                    let mut stream = stream.into_inner();
                    while let Ok(Some(update)) = stream.message().await {
                        backoff = Duration::from_millis(100);
                        if !serving(update.status == ServingStatus::Serving as i32, &mut inserted).await {
                            return;
                        }
                        if std::mem::take(&mut first) {
                            health.unprobed.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
            // Connect failed, the server is gone, or the watch broke (reset, missed keep-alive).
            if !serving(false, &mut inserted).await {
                return;
            }
            if std::mem::take(&mut first) {
                health.unprobed.fetch_sub(1, Ordering::AcqRel);
                health.healthy.send_modify(|_| {});
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    };
    tokio::select! {
        () = watching => {}
        () = changes.closed() => {}
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
                    let _ =
                        healthy.wait_for(|n| *n > 0 || health.unprobed.load(Ordering::Acquire) == 0).await;
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
