//! Replicas of one service: names resolved again and again, and each address watched over
//! `grpc.health.v1` so the balancer holds only the healthy ones.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::transport::Endpoint;
use tonic::transport::channel::Change;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use super::{ClientConfig, Health};

/// One configured endpoint: a host name (or address) and port.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) scheme: String,
    pub(super) host: String,
    pub(super) port: u16,
}

/// Resolves `target` every `dns_refresh` and keeps one watcher per address it resolves to.
pub(super) async fn resolve_replicas(
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
