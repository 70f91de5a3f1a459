//! Logs, traces and metrics for every process (docs/observability.md).
//!
//! Logs: `tracing`, JSON when stdout is not a terminal (containers, CI), human-readable otherwise;
//! the filter comes from `MESH_LOG` or `RUST_LOG`, default `info`.
//!
//! Traces: every `tracing` span is also an OpenTelemetry span, exported over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and neither
//! `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`. The exporter follows the
//! OpenTelemetry SDK environment spec through the SDK itself: the protocol from
//! `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the
//! default, or `grpc`), headers, timeout and the `OTEL_BSP_*` batch settings. The resource comes
//! from the SDK's detectors (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`), with the
//! component's name as `service.name` only when neither names one, and `service.version`.
//!
//! Metrics: one process-wide Prometheus recorder, every family described from
//! [`crate::metrics_catalog`]; [`render_metrics`] renders it for `/metrics`, with the process
//! metrics (`process_*`) read at each scrape and `mesh_build_info`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();
static PROCESS_METRICS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// The version every component reports (`service.version`, `mesh_build_info`): the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from, when the build set `MESH_BUILD_COMMIT` (the container
/// build does); the `commit` label of `mesh_build_info`.
pub const COMMIT: Option<&str> = option_env!("MESH_BUILD_COMMIT");

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

/// An OTLP exporter when an OTLP endpoint is set (and the SDK is not disabled); otherwise none,
/// and nothing leaves the process. The SDK's builder reads the protocol, endpoint, headers and
/// timeout from the environment.
fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let endpoint =
        set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
    {
        return None;
    }
    match opentelemetry_otlp::SpanExporter::builder().build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource(service))
                .build(),
        ),
        Err(e) => {
            eprintln!("OTLP export to {endpoint} disabled: {e}");
            None
        }
    }
}

/// The resource of this process's spans, per the SDK environment spec: `OTEL_SERVICE_NAME`
/// first, then `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, then `component`; every other
/// attribute of `OTEL_RESOURCE_ATTRIBUTES`, the SDK's `telemetry.sdk.*`, and `service.version`
/// unless the environment gives one.
pub fn resource(component: &str) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", component.to_owned()),
            KeyValue::new("service.version", VERSION),
        ])
        .with_detectors(&[Box::new(TelemetryResourceDetector), Box::new(EnvResourceDetector::new())]);
    // The SDK's own detector reads OTEL_SERVICE_NAME; without it, it would name the service
    // `unknown_service:<executable>` over the component's name.
    if std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty()) {
        builder = builder.with_detector(Box::new(SdkProvidedResourceDetector));
    }
    builder.build()
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
        build_info(service);
        tracing::info!(service, version = VERSION, "telemetry ready");
    }
}

/// `mesh_build_info{component, version, commit} 1` (no `commit` label when it is unknown).
fn build_info(component: &str) {
    let gauge = match COMMIT {
        Some(commit) => metrics::gauge!(
            "mesh_build_info", "component" => component.to_owned(), "version" => VERSION, "commit" => commit
        ),
        None => metrics::gauge!("mesh_build_info", "component" => component.to_owned(), "version" => VERSION),
    };
    gauge.set(1.0);
}

/// `/metrics`: the process metrics read now, then everything recorded, as Prometheus text.
pub fn render_metrics() -> String {
    let handle = metrics_handle();
    if let Some(process) = PROCESS_METRICS.get() {
        process.collect();
    }
    handle.render()
}

/// The process-wide Prometheus recorder, installed on first use, with every family of
/// [`crate::metrics_catalog`] described.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .build_recorder();
            let process = metrics_process::Collector::default();
            metrics::with_local_recorder(&recorder, || {
                crate::metrics_catalog::describe();
                process.describe();
            });
            let _ = PROCESS_METRICS.set(process);
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by a test harness); ours then
            // renders only what is recorded through it, which is better than failing to start.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
