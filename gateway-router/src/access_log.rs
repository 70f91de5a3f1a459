//! The access log: one line per forwarded request, an event of target `access` on the
//! process's log output (JSON off a terminal), so operators filter it by target
//! (`MESH_LOG=info,access=off` silences it; `jq 'select(.target=="access")'` keeps only it).
//!
//! Fields: `request_id`, `trace_id` (the request's span's when spans are exported, else the
//! client's `traceparent`'s), `client` (behind trusted proxies), `method`, `path` (never the
//! query string: it may carry secrets), `pool` (`none` before one was chosen), `instance` (the
//! last one tried), `attempts` (0: the router answered itself), `status`, `duration_ms` (to the
//! response head; a stream's body goes on after it), `bytes` (the response body's size when it
//! is known up front: a streamed body has none).
//!
//! `access_log.sample` keeps that share of the successful answers; a 5xx or a refusal of the
//! router's own (no attempt made) is always logged. The hook costs nothing on the request path
//! but a few atomics while the log is off (`access_log.enabled = false`, or the `access` target
//! filtered out, as `meshctl bench` runs it): the request's head is copied (reference counted)
//! only when a line may be written.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use axum::body::Body;
use http::{HeaderMap, Method, Response, Uri};

use crate::config::AccessLogConfig;

/// The log target of access lines.
pub const TARGET: &str = "access";

/// What the failover loop says of its attempts: how many, and the last instance tried. Lives on
/// the request's stack; no allocation.
#[derive(Debug, Default)]
pub struct Upstream {
    attempts: AtomicU32,
    instance: Mutex<Option<SocketAddr>>,
}

impl Upstream {
    /// Called as attempt number `attempt` goes to `instance`.
    pub fn attempt(&self, instance: SocketAddr, attempt: u32) {
        self.attempts.store(attempt, Ordering::Relaxed);
        *self.instance.lock().unwrap_or_else(|p| p.into_inner()) = Some(instance);
    }

    fn get(&self) -> (u32, Option<SocketAddr>) {
        (self.attempts.load(Ordering::Relaxed), *self.instance.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The request's head as the access line needs it, taken before the request is forwarded, only
/// when a line may be written.
#[derive(Debug)]
pub struct Head {
    method: Method,
    uri: Uri,
    /// The client's trace id, from its `traceparent` (when spans are not exported).
    traceparent: Option<http::HeaderValue>,
}

impl Head {
    /// The head of a request, or `None` when no access line will be written.
    pub fn capture(cfg: &AccessLogConfig, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Self> {
        if !cfg.enabled || !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            return None;
        }
        Some(Self {
            method: method.clone(),
            uri: uri.clone(),
            traceparent: headers.get("traceparent").cloned(),
        })
    }
}

/// What one access line says besides the head and the answer.
pub struct Entry<'a> {
    pub request_id: &'a str,
    /// The trace id of the request's span, when spans are exported.
    pub trace_id: Option<&'a str>,
    pub client: &'a str,
    pub pool: Option<&'a str>,
    pub upstream: &'a Upstream,
    pub started: Instant,
}

/// Writes the access line of `response` when the sampling says so.
pub fn record(cfg: &AccessLogConfig, head: &Head, entry: &Entry<'_>, response: &Response<Body>) {
    let status = response.status();
    let (attempts, instance) = entry.upstream.get();
    // Errors and refusals always; the rest sampled.
    let always = status.is_server_error() || attempts == 0;
    if !always && cfg.sample < 1.0 && !(cfg.sample > 0.0 && rand::random::<f64>() < cfg.sample) {
        return;
    }
    let client_trace = head
        .traceparent
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .filter(|v| crate::headers::is_valid_traceparent(v))
        .map(|v| &v[3..35]);
    let trace_id = entry.trace_id.or(client_trace);
    let bytes = hyper::body::Body::size_hint(response.body()).exact();
    tracing::info!(
        target: TARGET,
        request_id = entry.request_id,
        trace_id,
        client = entry.client,
        method = head.method.as_str(),
        path = head.uri.path(),
        pool = entry.pool.unwrap_or("none"),
        instance = instance.map(tracing::field::display),
        attempts,
        status = status.as_u16(),
        duration_ms = entry.started.elapsed().as_secs_f64() * 1000.0,
        bytes,
        "access"
    );
}
