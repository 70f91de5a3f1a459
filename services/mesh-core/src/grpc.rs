//! Serving a tonic service the way every mesh service does: `grpc.health.v1` and server
//! reflection (`grpc.reflection.v1` and `v1alpha`, so `grpcurl` needs no `.proto` files) beside
//! it, a server-side deadline, and a drain that first reports NOT_SERVING, waits a grace period
//! so balancers move away, then stops accepting and lets in-flight calls finish.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic_reflection::server::{v1, v1alpha};

/// Server settings shared by every gRPC service.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Upper bound on any one call, whatever deadline the client sent. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub request_timeout: Duration,
    /// How long to report NOT_SERVING before refusing new calls on drain. Default: 0s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub drain_grace: Duration,
    /// How long in-flight calls may take to finish once new calls are refused; streams still open
    /// then (e.g. health watches, which never end by themselves) are cut. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub drain_timeout: Duration,
    /// Serve gRPC server reflection (v1 and v1alpha), listing this server's services, health and
    /// reflection itself. It shows the schema, never data; turn it off
    /// (`MESH_SERVER__REFLECTION=false`) where the schema should not be discoverable. Default: true.
    pub reflection: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            drain_grace: Duration::ZERO,
            drain_timeout: Duration::from_secs(10),
            reflection: true,
        }
    }
}

/// Serves `routes` on `listener` until `shutdown` resolves, then drains. `names` are the fully
/// qualified service names reported through `grpc.health.v1` and listed by reflection.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    names: &[&'static str],
    cfg: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = crate::health::health_service(names);
    let (reflection_v1, reflection_v1alpha) = cfg.reflection.then(|| reflection(names)).unzip();
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
        .layer(crate::fault_inject::FaultLayer(crate::fault_inject::Protocol::Grpc))
        .add_routes(routes)
        .add_service(health)
        .add_optional_service(reflection_v1)
        .add_optional_service(reflection_v1alpha)
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

/// What reflection lists besides the served services: what [`serve`] adds to every server.
const ALSO_SERVED: [&str; 3] = [
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// Server reflection in both versions (grpcurl asks v1 first, older tools only v1alpha), listing
/// `names` and [`ALSO_SERVED`] rather than every service of the mesh's descriptor set: a client
/// sees what this server answers. Symbols still resolve from the whole set, which holds only the
/// public contract.
fn reflection(
    names: &[&'static str],
) -> (
    v1::ServerReflectionServer<impl v1::ServerReflection>,
    v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
) {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(mesh_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Each version registers its own descriptors; both, so either describes the other.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
        names.iter().copied().chain(ALSO_SERVED).fold(builder, |b, name| b.with_service_name(name))
    };
    // The sets are compiled in, so one that does not decode is a build defect, never a runtime
    // condition: `reflection_builds_from_the_compiled_in_descriptor_sets` below fails first.
    let v1 = builder().build_v1().expect("the compiled-in descriptor sets decode");
    let v1alpha = builder().build_v1alpha().expect("the compiled-in descriptor sets decode");
    (v1, v1alpha)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reflection_builds_from_the_compiled_in_descriptor_sets() {
        let _ = super::reflection(&["mesh.auth.v1.AuthService"]);
    }

    #[test]
    fn reflection_is_on_by_default() {
        assert!(super::ServerConfig::default().reflection);
    }
}
