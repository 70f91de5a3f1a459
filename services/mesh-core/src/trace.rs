//! W3C trace context across every hop: extracted from incoming HTTP headers or gRPC metadata
//! into the current `tracing` span, and injected from it into outgoing requests.
//!
//! Spans become OpenTelemetry spans through the layer [`crate::telemetry`] installs; without an
//! exporter configured nothing leaves the process, and a span's context is simply empty.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the trace context in `headers` (`traceparent`, `tracestate`), if any.
pub fn continue_from(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Writes `span`'s trace context into `headers`. Returns false when there is none (no
/// OpenTelemetry layer installed), leaving `headers` untouched.
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) -> bool {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return false;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(headers))
    });
    true
}

/// The trace id of `span`, for logs (`None` without an OpenTelemetry layer).
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// Whether spans made now are exported: an OpenTelemetry layer is installed and lets INFO
/// spans through. Found with one probe span, since the layer is not otherwise visible; a
/// component asks once, at its start, to skip per-request spans that only an exporter needs.
pub fn exporting() -> bool {
    let probe = tracing::info_span!("mesh.telemetry_probe");
    trace_id(&probe).is_some()
}
