//! Logs and metrics for every process.
//!
//! Logs: `tracing`, JSON when stdout is not a terminal (containers, CI), human-readable otherwise;
//! the filter comes from `MESH_LOG` or `RUST_LOG`, default `info`. Traces: every `tracing` span
//! is also an OpenTelemetry span, exported over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Metrics: one process-wide
//! Prometheus recorder; [`metrics_handle`] renders it for `/metrics`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
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
    let provider = otlp_provider(service);
    install_with(service, default_filter, to_stderr, provider);
}

/// Like [`init`], exporting spans through `provider` (tests pass one with an in-memory exporter).
pub fn init_with_tracer_provider(service: &str, provider: SdkTracerProvider) {
    install_with(service, "info", false, Some(provider));
}

/// An OTLP/gRPC exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise none, and
/// nothing leaves the process.
fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty())?;
    match opentelemetry_otlp::SpanExporter::builder().with_tonic().build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
                .build(),
        ),
        Err(e) => {
            eprintln!("OTLP export to {endpoint} disabled: {e}");
            None
        }
    }
}

fn install_with(service: &str, default_filter: &str, to_stderr: bool, provider: Option<SdkTracerProvider>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, Registry};

    let filter = std::env::var("MESH_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default_filter));
    let terminal = if to_stderr { std::io::stderr().is_terminal() } else { std::io::stdout().is_terminal() };
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match (terminal, to_stderr) {
        (true, false) => tracing_subscriber::fmt::layer().boxed(),
        (true, true) => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
        (false, false) => {
            tracing_subscriber::fmt::layer().json().flatten_event(true).with_current_span(true).boxed()
        }
        (false, true) => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let otel = provider.as_ref().map(|provider| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(provider.tracer("mesh"))
    });
    let installed = Registry::default().with(fmt).with(otel).with(filter).try_init().is_ok();
    if installed {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(provider) = provider {
            opentelemetry::global::set_tracer_provider(provider);
        }
    }
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
