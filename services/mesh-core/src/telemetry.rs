//! Logs and metrics for every process.
//!
//! Logs: `tracing`, JSON when stdout is not a terminal (containers, CI), human-readable otherwise;
//! the filter comes from `MESH_LOG` or `RUST_LOG`, default `info`. Metrics: one process-wide
//! Prometheus recorder; [`metrics_handle`] renders it for `/metrics`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Histogram buckets in seconds: from sub-millisecond hops to the 30 s server timeout.
const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs logging (to stdout, default level `info`) and the metrics recorder. Safe to call
/// more than once (later calls keep the first setup), which is what tests need when many
/// components share a process.
pub fn init(service: &str) {
    install(service, "info", false);
}

/// Like [`init`] for a command-line tool whose own output goes to stdout: logs go to stderr and
/// default to `warn`, so the tool's output stays readable. `MESH_LOG` still sets the filter.
pub fn init_cli(service: &str) {
    install(service, "warn", true);
}

fn install(service: &str, default_filter: &str, to_stderr: bool) {
    let filter = std::env::var("MESH_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let terminal = if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let installed = match (terminal, to_stderr) {
        (true, false) => builder.try_init().is_ok(),
        (true, true) => builder.with_writer(std::io::stderr).try_init().is_ok(),
        (false, false) => builder.json().flatten_event(true).with_current_span(true).try_init().is_ok(),
        (false, true) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .try_init()
            .is_ok(),
    };
    let _ = metrics_handle();
    if installed {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "telemetry ready");
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness); ours then
            // renders only what is recorded through it, which is better than failing to start.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
