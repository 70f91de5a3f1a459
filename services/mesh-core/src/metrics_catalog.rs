//! Every metric the mesh records, with its type, unit, labels and help text: one table for the
//! whole workspace, described to the Prometheus recorder when it is installed
//! ([`crate::telemetry::metrics_handle`]), so `/metrics` carries a `# HELP` line for every
//! family. A metric that is recorded but not listed here has no help text: the suite's
//! `every_recorded_metric_is_in_the_catalog` (tests/tests/metrics.rs) reads every `counter!`,
//! `gauge!` and `histogram!` call in the source and fails on one missing, and
//! `every_metric_has_help_text` scrapes running components. docs/observability.md lists this
//! table ([`markdown`]; a test keeps it current).
//!
//! The names keep Prometheus' conventions (`_total` counters, base units in the name:
//! `_seconds`, `_bytes`); the unit given here is the `metrics` crate's [`Unit`] of the value.

use metrics::Unit;

/// What kind of instrument a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    /// Its labels, comma separated (empty: none).
    pub labels: &'static str,
    /// Who records it.
    pub component: &'static str,
    pub help: &'static str,
}

const fn m(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static str,
    component: &'static str,
    help: &'static str,
) -> Metric {
    Metric { name, kind, unit, labels, component, help }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};
use Unit::{Count, Seconds};

/// The metrics every process exports whatever it is: [`crate::telemetry`] records them.
pub const PROCESS: &[Metric] = &[
    m(
        "mesh_build_info",
        G,
        Count,
        "component, version, commit",
        "every process",
        "Always 1; the labels say which component, version and commit (when built with MESH_BUILD_COMMIT) this is.",
    ),
    m(
        "process_cpu_seconds_total",
        C,
        Seconds,
        "",
        "every process",
        "Total user and system CPU time spent in seconds.",
    ),
    m("process_open_fds", G, Count, "", "every process", "Number of open file descriptors."),
    m("process_max_fds", G, Count, "", "every process", "Maximum number of open file descriptors."),
    m("process_virtual_memory_bytes", G, Unit::Bytes, "", "every process", "Virtual memory size in bytes."),
    m(
        "process_virtual_memory_max_bytes",
        G,
        Unit::Bytes,
        "",
        "every process",
        "Maximum amount of virtual memory available in bytes.",
    ),
    m("process_resident_memory_bytes", G, Unit::Bytes, "", "every process", "Resident memory size in bytes."),
    m(
        "process_start_time_seconds",
        G,
        Seconds,
        "",
        "every process",
        "Start time of the process since unix epoch in seconds.",
    ),
    m("process_threads", G, Count, "", "every process", "Number of OS threads in the process."),
];

/// The metrics the mesh's own code records.
pub const RECORDED: &[Metric] = &[
    // The router.
    m(
        "router_requests_total",
        C,
        Count,
        "pool, status",
        "gateway-router",
        "Answers to client requests, the router's own refusals included (pool \"none\" before a pool was chosen).",
    ),
    m(
        "router_request_duration_seconds",
        H,
        Seconds,
        "pool",
        "gateway-router",
        "Time from a request's arrival to its response head, retries included.",
    ),
    m(
        "router_shed_total",
        C,
        Count,
        "pool",
        "gateway-router",
        "Requests refused with 503 because the pool's request, upload or stream slots were taken.",
    ),
    m(
        "router_no_healthy_instance_total",
        C,
        Count,
        "pool",
        "gateway-router",
        "Requests refused with 503 because no instance of the pool was eligible.",
    ),
    m(
        "router_retries_total",
        C,
        Count,
        "pool, granted",
        "gateway-router",
        "Retries asked of the pool's retry budget; granted=\"false\" when the budget was spent.",
    ),
    m(
        "router_ejections_total",
        C,
        Count,
        "pool",
        "gateway-router",
        "Instances ejected from their pool (failed probe or consecutive 5xx).",
    ),
    m(
        "router_ejections_refused_total",
        C,
        Count,
        "pool",
        "gateway-router",
        "Passive ejections not made because the pool was at its ejection floor (health.max_ejection_percent).",
    ),
    m(
        "router_rate_limited_total",
        C,
        Count,
        "",
        "gateway-router",
        "Requests refused with 429 by the per-client rate limit.",
    ),
    m(
        "router_refused_framing_total",
        C,
        Count,
        "",
        "gateway-router",
        "Requests refused with 400 for carrying both Content-Length and Transfer-Encoding.",
    ),
    m(
        "router_client_body_failures_total",
        C,
        Count,
        "reason",
        "gateway-router",
        "Client request bodies that stalled (timeout), were too large (too_large) or broke (broken).",
    ),
    m("router_connections_open", G, Count, "", "gateway-router", "Client connections open now."),
    m(
        "router_connections_closed_total",
        C,
        Count,
        "reason",
        "gateway-router",
        "Client connections closed or refused by the router, by reason (a cap, a deadline).",
    ),
    // The gateways.
    m(
        "http_server_requests_total",
        C,
        Count,
        "route, method, status",
        "identity-gateway, business-gateway",
        "Requests a gateway answered, by matched route.",
    ),
    m(
        "http_server_request_duration_seconds",
        H,
        Seconds,
        "route, method",
        "identity-gateway, business-gateway",
        "Time a gateway took to answer a request, by matched route.",
    ),
    m(
        "gateway_fallbacks_total",
        C,
        Count,
        "kind, route",
        "identity-gateway, business-gateway",
        "Answers given by a fallback (cache, degraded, queued) because a service failed.",
    ),
    m(
        "gateway_response_cache_total",
        C,
        Count,
        "result",
        "identity-gateway, business-gateway",
        "Look-ups in the last-known-good response cache, hit or miss.",
    ),
    m(
        "gateway_shed_total",
        C,
        Count,
        "",
        "identity-gateway, business-gateway",
        "Requests refused with 503 because the gateway was at its concurrency limit.",
    ),
    m(
        "gateway_throttle_refused_total",
        C,
        Count,
        "action, by",
        "identity-gateway",
        "Login and registration attempts refused by the throttle, by action and by what keyed it.",
    ),
    m(
        "gateway_authn_fallbacks_total",
        C,
        Count,
        "credential",
        "identity-gateway, business-gateway",
        "Credentials checked from the last known keys because auth was unreachable.",
    ),
    m(
        "gateway_authn_revoked_total",
        C,
        Count,
        "credential",
        "identity-gateway, business-gateway",
        "Requests refused because their token or API key was revoked.",
    ),
    m(
        "gateway_quota_local_total",
        C,
        Count,
        "",
        "identity-gateway, business-gateway",
        "Requests metered locally because the quota service failed.",
    ),
    m(
        "gateway_dashboard_sections_unavailable_total",
        C,
        Count,
        "service",
        "business-gateway",
        "Dashboard sections left out because their service failed.",
    ),
    m("gateway_streams_total", C, Count, "", "business-gateway", "Event streams (text/event-stream) opened."),
    m("gateway_streams_active", G, Count, "", "business-gateway", "Event streams open now."),
    m(
        "gateway_streams_refused_total",
        C,
        Count,
        "reason",
        "business-gateway",
        "Event streams refused because the principal's or the gateway's stream cap was reached.",
    ),
    m(
        "gateway_streams_ended_total",
        C,
        Count,
        "reason",
        "business-gateway",
        "Event streams ended, by reason (client gone, client too slow, upstream ended or failed, ...).",
    ),
    m(
        "gateway_stream_buffered_events",
        G,
        Count,
        "",
        "business-gateway",
        "Events buffered for stream clients, not yet written.",
    ),
    m(
        "orders_queue_enqueued_total",
        C,
        Count,
        "",
        "business-gateway",
        "Orders queued in Redis because the orders service was down.",
    ),
    m(
        "orders_queue_refused_total",
        C,
        Count,
        "",
        "business-gateway",
        "Orders refused because the outage queue was full or its oldest entry too old.",
    ),
    // The services.
    m(
        "grpc_server_requests_total",
        C,
        Count,
        "method, code",
        "every service",
        "gRPC calls served, by method and status code (an unknown method is labelled unknown).",
    ),
    m(
        "grpc_server_request_duration_seconds",
        H,
        Seconds,
        "method",
        "every service",
        "Time a gRPC server took to its response headers.",
    ),
    m(
        "grpc_client_breaker_transitions_total",
        C,
        Count,
        "service, to",
        "gateways, services that call services",
        "Circuit breaker state changes of a called service, by new state.",
    ),
    m(
        "grpc_client_breaker_open",
        G,
        Count,
        "service",
        "gateways, services that call services",
        "1 while the called service's breaker is open, else 0.",
    ),
    m(
        "grpc_client_retries_total",
        C,
        Count,
        "service",
        "gateways, services that call services",
        "gRPC calls retried on another replica.",
    ),
    m(
        "grpc_client_shed_total",
        C,
        Count,
        "service",
        "gateways, services that call services",
        "gRPC calls refused at once because too many were in flight to the service.",
    ),
    m(
        "grpc_client_replica_health_changes_total",
        C,
        Count,
        "serving",
        "gateways, services that call services",
        "Replicas that came into (serving=\"true\") or left (\"false\") a client's balancer.",
    ),
    m(
        "store_fail_open_total",
        C,
        Count,
        "tier, result",
        "every component with a store",
        "Store operations that failed open (failed, or skipped while the tier rests after a failure).",
    ),
    m("auth_password_hashes_total", C, Count, "", "auth", "Password hashes computed."),
    m("auth_password_hash_waiting", G, Count, "", "auth", "Callers waiting for a password hashing slot now."),
    m("auth_password_hash_slots", G, Count, "", "auth", "Password hashing slots (hashes at once)."),
    m(
        "auth_password_hash_refused_total",
        C,
        Count,
        "reason",
        "auth",
        "Password hashes refused (queue full, waited too long).",
    ),
    m(
        "orders_queue_processed_total",
        C,
        Count,
        "outcome",
        "orders",
        "Queued orders the orders service took from the outage queue, by outcome.",
    ),
    m(
        "orders_queue_stale_entries_total",
        C,
        Count,
        "",
        "orders",
        "Queued orders that waited over a quarter of the Idempotency-Key lifetime.",
    ),
    m("analytics_watchers_total", C, Count, "", "analytics", "Live event watches opened."),
    m("analytics_watchers_active", G, Count, "", "analytics", "Live event watches open now."),
    m(
        "analytics_watchers_cancelled_total",
        C,
        Count,
        "",
        "analytics",
        "Live event watches cancelled by their caller.",
    ),
    m(
        "analytics_live_publish_failures_total",
        C,
        Count,
        "",
        "analytics",
        "Recorded events that could not be published to live watchers.",
    ),
];

/// Every family: the process metrics, then the recorded ones.
pub fn all() -> impl Iterator<Item = &'static Metric> {
    PROCESS.iter().chain(RECORDED)
}

/// The entry for `name`, if any.
pub fn find(name: &str) -> Option<&'static Metric> {
    all().find(|m| m.name == name)
}

/// Describes every catalogued family to the installed recorder (the process metrics are
/// described by their collector, with the same text).
pub fn describe() {
    for metric in RECORDED.iter().chain(&PROCESS[..1]) {
        let Metric { name, unit, help, .. } = *metric;
        match metric.kind {
            Kind::Counter => metrics::describe_counter!(name, unit, help),
            Kind::Gauge => metrics::describe_gauge!(name, unit, help),
            Kind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

/// The table of docs/observability.md.
pub fn markdown() -> String {
    let mut out = String::from(
        "| metric | type | unit | labels | recorded by | meaning |\n|---|---|---|---|---|---|\n",
    );
    for m in all() {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            m.unit.as_str(),
            if m.labels.is_empty() { "-" } else { m.labels },
            m.component,
            m.help
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in all() {
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert!(!m.help.is_empty(), "{} has no help", m.name);
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}: counters end in _total",
                m.name
            );
            if m.unit == Unit::Seconds {
                assert!(m.name.contains("_seconds"), "{}: seconds in the name", m.name);
            }
        }
    }

    #[test]
    fn the_observability_doc_lists_every_metric() {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/observability.md"))
                .expect("docs/observability.md");
        let table = markdown();
        assert!(
            doc.contains(&table),
            "docs/observability.md's metric table is stale; replace it with:\n{table}"
        );
    }
}
