//! Serving a tonic service the way every mesh service does: `grpc.health.v1` beside it, a
//! server-side deadline, and a drain that first reports NOT_SERVING, waits a grace period so
//! balancers move away, then stops accepting and lets in-flight calls finish.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;

/// Server settings shared by every gRPC service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Upper bound on any one call, whatever deadline the client sent. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long to report NOT_SERVING before refusing new calls on drain. Default: 0s.
    #[serde(with = "humantime_serde")]
    pub drain_grace: Duration,
    /// How long in-flight calls may take to finish once new calls are refused; streams still open
    /// then (e.g. health watches, which never end by themselves) are cut. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            drain_grace: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains. `names` are the fully
/// qualified service names reported through `grpc.health.v1`.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    names: &[&'static str],
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = crate::health::health_service(names);
    let grace = cfg.drain_grace;
    let (refusing_tx, refusing_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        shutdown.await;
        reporter.set_not_serving();
        tokio::time::sleep(grace).await;
        let _ = refusing_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .timeout(cfg.request_timeout)
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .layer(crate::grpc_metrics::GrpcMetricsLayer)
        .add_routes(routes)
        .add_service(health)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stop);
    tokio::pin!(server);
    let drain_timeout = cfg.drain_timeout;
    let overdue = async move {
        if refusing_rx.await.is_err() {
            // The server ended on its own before draining; nothing to cut.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain_timeout).await;
    };
    tokio::select! {
        result = &mut server => result,
        () = overdue => {
            tracing::warn!(?drain_timeout, "calls still open after the drain timeout; closing them");
            Ok(())
        }
    }
}
