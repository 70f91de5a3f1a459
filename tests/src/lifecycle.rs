//! The lifecycle every service binary must have, as one reusable check.

use std::time::Duration;

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::process::{ServiceProcess, http_get};

/// Runs `binary` as a process and checks: it serves `grpc.health.v1` as SERVING for
/// `service_name`; its admin server answers `/healthz`, `/readyz` and `/metrics` (with the
/// health calls counted); on SIGTERM it stops within 10 s with exit code 0.
pub async fn check_binary_lifecycle(binary: &str, service_name: &str) -> anyhow::Result<()> {
    let mut process = ServiceProcess::start(binary, &[])?;
    let mut health = HealthClient::new(crate::grpc_channel(process.addr).await?);
    let status = health.check(HealthCheckRequest { service: service_name.into() }).await?.into_inner();
    anyhow::ensure!(status.status == 1, "{service_name} is not SERVING: {status:?}");

    let (code, _) = http_get(process.admin, "/healthz").await?;
    anyhow::ensure!(code == 200, "/healthz answered {code}");
    let (code, _) = http_get(process.admin, "/readyz").await?;
    anyhow::ensure!(code == 200, "/readyz answered {code}");
    let (code, metrics) = http_get(process.admin, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics answered {code}");
    anyhow::ensure!(
        metrics.contains("grpc_server_requests_total{method=\"/grpc.health.v1.Health/Check\",code=\"Ok\"} 1"),
        "the health check is not counted in /metrics:\n{metrics}"
    );

    // The client stays connected: a drain must not wait for idle connections to go away.
    process.terminate()?;
    let started = std::time::Instant::now();
    let exit = process.wait_exit(Duration::from_secs(10)).await?;
    anyhow::ensure!(started.elapsed() < Duration::from_secs(5), "drain took {:?}", started.elapsed());
    anyhow::ensure!(exit.success(), "exited with {exit} after SIGTERM");
    drop(health);
    Ok(())
}
