//! Fault injection for chaos experiments: added latency and injected errors on a process's main
//! traffic, set over its admin listener, like Envoy's fault filter. Not the failure model of
//! the mesh (that is [`crate::fault`]): this is a test instrument.
//!
//! Off unless the process is configured with `admin_faults = true` (`MESH_ADMIN_FAULTS=true`),
//! which `meshctl up --processes` sets on every child; a process without it answers every
//! `/fault` request with 404, so a production process cannot be slowed by whoever reaches its
//! admin port.
//!
//! - `PUT /fault` (JSON [`FaultSpec`]): replaces the fault in force;
//! - `GET /fault`: the fault in force (`null` when none);
//! - `DELETE /fault`: removes it.
//!
//! The fault applies to the component's own requests, not to its probes: gRPC health checks
//! and reflection, and `/healthz`, `/readyz`, `/metrics`, `/mesh/*` on an HTTP component, pass
//! untouched, so a delayed replica is slow, not dead (what a breaker, not a health check,
//! has to catch). A delay on a gRPC call lasts at most the call's deadline (`grpc-timeout`),
//! which it then answers with DEADLINE_EXCEEDED, as a handler that slow would be cut off.
//! [`FaultLayer`] is the tower layer every component's server wraps its
//! service in; while no fault is in force it costs one uncontended lock per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A fault to inject, as `PUT /fault` takes it.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    /// Latency added before a request is handled.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Share of requests delayed, 0 to 1. Default (0 with a delay set): 1.
    pub delay_rate: f64,
    /// Share of requests answered at once with `abort_status` instead of being handled.
    pub abort_rate: f64,
    /// The HTTP status of an aborted request (gRPC components answer the matching gRPC code:
    /// 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 429 RESOURCE_EXHAUSTED, else INTERNAL).
    /// Default: 503.
    pub abort_status: u16,
    /// The fault ends by itself after this long; none: until `DELETE /fault`.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

impl FaultSpec {
    fn normalised(mut self) -> Result<Self, String> {
        if self.abort_status == 0 {
            self.abort_status = 503;
        }
        if !self.delay.is_zero() && self.delay_rate == 0.0 {
            self.delay_rate = 1.0;
        }
        for (name, rate) in [("delay_rate", self.delay_rate), ("abort_rate", self.abort_rate)] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1, not {rate}"));
            }
        }
        if !(400..=599).contains(&self.abort_status) {
            return Err(format!("abort_status must be an error status (400-599), not {}", self.abort_status));
        }
        if self.delay > MAX_DELAY {
            return Err(format!("delay is at most {MAX_DELAY:?}"));
        }
        Ok(self)
    }
}

/// The longest delay one request may be given.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// What the layer does to one request.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decision {
    Pass,
    Delay(Duration),
    Abort(u16),
    DelayThenAbort(Duration, u16),
}

#[derive(Debug)]
struct Active {
    spec: FaultSpec,
    until: Option<Instant>,
}

/// The process's fault state: whether `/fault` is served, and the fault in force.
#[derive(Debug, Default)]
pub struct Injector {
    enabled: AtomicBool,
    active: Mutex<Option<Active>>,
}

impl Injector {
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Puts `spec` in force (the process must have `admin_faults` on).
    pub fn set(&self, spec: FaultSpec) -> Result<FaultSpec, String> {
        let spec = spec.normalised()?;
        let until = spec.duration.map(|d| Instant::now() + d);
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Some(Active { spec: spec.clone(), until });
        tracing::warn!(?spec, "fault injection in force");
        Ok(spec)
    }

    pub fn clear(&self) {
        if self.active.lock().unwrap_or_else(|e| e.into_inner()).take().is_some() {
            tracing::warn!("fault injection removed");
        }
    }

    /// The fault in force, if it has not ended.
    pub fn current(&self) -> Option<FaultSpec> {
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        if active.as_ref().is_some_and(|a| a.until.is_some_and(|until| Instant::now() >= until)) {
            *active = None;
        }
        active.as_ref().map(|a| a.spec.clone())
    }

    fn decide(&self) -> Decision {
        if !self.is_enabled() {
            return Decision::Pass;
        }
        let Some(spec) = self.current() else { return Decision::Pass };
        let delay = (spec.delay_rate > 0.0 && rand::random::<f64>() < spec.delay_rate).then_some(spec.delay);
        let abort =
            (spec.abort_rate > 0.0 && rand::random::<f64>() < spec.abort_rate).then_some(spec.abort_status);
        match (delay, abort) {
            (None, None) => Decision::Pass,
            (Some(d), None) => Decision::Delay(d),
            (None, Some(s)) => Decision::Abort(s),
            (Some(d), Some(s)) => Decision::DelayThenAbort(d, s),
        }
    }
}

/// The one injector of this process.
pub fn injector() -> &'static Injector {
    static INJECTOR: OnceLock<Injector> = OnceLock::new();
    INJECTOR.get_or_init(Injector::default)
}

/// Serves `/fault` on the admin listener from now on (the `admin_faults` config key).
pub fn enable(on: bool) {
    injector().enabled.store(on, Ordering::Relaxed);
    if on {
        tracing::warn!("admin_faults is on: /fault on the admin listener can slow and fail this process");
    }
}

/// `GET /fault`.
pub(crate) async fn get_fault() -> Response {
    if !injector().is_enabled() {
        return not_enabled();
    }
    Json(injector().current()).into_response()
}

/// `PUT /fault` (and `POST`).
pub(crate) async fn put_fault(body: axum::body::Bytes) -> Response {
    if !injector().is_enabled() {
        return not_enabled();
    }
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("not a fault: {e}\n")).into_response(),
    };
    match injector().set(spec) {
        Ok(spec) => Json(spec).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    }
}

/// `DELETE /fault`.
pub(crate) async fn delete_fault() -> Response {
    if !injector().is_enabled() {
        return not_enabled();
    }
    injector().clear();
    StatusCode::NO_CONTENT.into_response()
}

fn not_enabled() -> Response {
    (StatusCode::NOT_FOUND, "fault injection is off (admin_faults = false)\n").into_response()
}

/// Which protocol a component speaks, so an abort is answered in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Grpc,
}

/// Wraps a component's main service in the process's fault injection.
#[derive(Clone, Copy, Debug)]
pub struct FaultLayer(pub Protocol);

impl<S> tower::Layer<S> for FaultLayer {
    type Service = FaultService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FaultService { inner, protocol: self.0 }
    }
}

#[derive(Clone, Debug)]
pub struct FaultService<S> {
    inner: S,
    protocol: Protocol,
}

/// Requests no fault touches: probes, metrics and status, so a faulty component stays
/// observable and is slow rather than dead.
fn exempt(protocol: Protocol, path: &str) -> bool {
    match protocol {
        Protocol::Grpc => path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection."),
        Protocol::Http => {
            matches!(path, "/healthz" | "/readyz" | "/metrics" | "/fault") || path.starts_with("/mesh/")
        }
    }
}

/// A gRPC call's `grpc-timeout`: the deadline the caller gave it.
fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    headers.get("grpc-timeout").and_then(crate::client::retry::parse_grpc_timeout)
}

/// A delay on a gRPC call ends at the call's deadline, as a slow handler would under tonic's
/// deadline: the delay sleeps until then and the call answers DEADLINE_EXCEEDED.
fn within_deadline(decision: Decision, deadline: Option<Duration>) -> Decision {
    let Some(deadline) = deadline else { return decision };
    match decision {
        Decision::Delay(delay) | Decision::DelayThenAbort(delay, _) if delay >= deadline => {
            Decision::DelayThenAbort(deadline, 504)
        }
        other => other,
    }
}

fn grpc_code(status: u16) -> u16 {
    match status {
        503 => 14,
        504 => 4,
        429 => 8,
        _ => 13,
    }
}

fn aborted<B: Default>(protocol: Protocol, status: u16) -> http::Response<B> {
    let mut response = http::Response::new(B::default());
    let headers = response.headers_mut();
    headers.insert("x-mesh-fault", http::HeaderValue::from_static("abort"));
    match protocol {
        Protocol::Http => {
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        }
        Protocol::Grpc => {
            // A trailers-only answer: the status in the headers, no message.
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", http::HeaderValue::from(grpc_code(status)));
            headers.insert("grpc-message", http::HeaderValue::from_static("injected%20fault"));
        }
    }
    response
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for FaultService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut decision =
            if exempt(self.protocol, request.uri().path()) { Decision::Pass } else { injector().decide() };
        if self.protocol == Protocol::Grpc {
            decision = within_deadline(decision, grpc_timeout(request.headers()));
        }
        // The ready service takes this request; a clone waits for the next (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let protocol = self.protocol;
        Box::pin(async move {
            match carry_out(decision, protocol).await {
                Some(answer) => Ok(answer),
                None => inner.call(request).await,
            }
        })
    }
}

/// Carries out `decision` before a request is handled: waits out its delay, and gives the
/// injected answer of an abort (`None`: handle the request).
async fn carry_out<B: Default>(decision: Decision, protocol: Protocol) -> Option<http::Response<B>> {
    match decision {
        Decision::Pass => None,
        Decision::Delay(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        Decision::Abort(status) => Some(aborted(protocol, status)),
        Decision::DelayThenAbort(delay, status) => {
            tokio::time::sleep(delay).await;
            Some(aborted(protocol, status))
        }
    }
}

/// [`FaultLayer`] for an HTTP component whose main service is not a tower service (the router's
/// hyper `service_fn`): the fault in force, applied to one request for `path`. While fault
/// injection is off this is one atomic load.
pub async fn before_http<B: Default>(path: &str) -> Option<http::Response<B>> {
    if !injector().is_enabled() || exempt(Protocol::Http, path) {
        return None;
    }
    carry_out(injector().decide(), Protocol::Http).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_checked_and_completed() {
        let spec =
            FaultSpec { delay: Duration::from_millis(300), ..FaultSpec::default() }.normalised().unwrap();
        assert_eq!((spec.delay_rate, spec.abort_status), (1.0, 503));
        assert!(FaultSpec { abort_rate: 1.5, ..FaultSpec::default() }.normalised().is_err());
        assert!(FaultSpec { abort_status: 200, ..FaultSpec::default() }.normalised().is_err());
        assert!(FaultSpec { delay: Duration::from_secs(61), ..FaultSpec::default() }.normalised().is_err());
    }

    #[test]
    fn probes_are_exempt() {
        assert!(exempt(Protocol::Grpc, "/grpc.health.v1.Health/Check"));
        assert!(!exempt(Protocol::Grpc, "/mesh.orders.v1.OrdersService/ListOrders"));
        assert!(exempt(Protocol::Http, "/readyz") && exempt(Protocol::Http, "/mesh/services"));
        assert!(!exempt(Protocol::Http, "/v1/users/me"));
    }

    #[test]
    fn a_disabled_injector_passes_everything_and_a_fault_ends_by_itself() {
        let injector = Injector::default();
        injector.set(FaultSpec { abort_rate: 1.0, ..FaultSpec::default() }).unwrap();
        assert_eq!(injector.decide(), Decision::Pass, "off unless enabled");
        injector.enabled.store(true, Ordering::Relaxed);
        assert_eq!(injector.decide(), Decision::Abort(503));
        injector
            .set(FaultSpec { abort_rate: 1.0, duration: Some(Duration::ZERO), ..FaultSpec::default() })
            .unwrap();
        assert_eq!(injector.decide(), Decision::Pass, "a fault of zero duration has ended");
        assert_eq!(injector.current(), None);
    }

    #[test]
    fn a_grpc_delay_ends_at_the_calls_deadline() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", http::HeaderValue::from_static("4999m"));
        let deadline = grpc_timeout(&headers);
        assert_eq!(deadline, Some(Duration::from_millis(4999)));
        let slow = Decision::Delay(Duration::from_secs(6));
        assert_eq!(
            within_deadline(slow, deadline),
            Decision::DelayThenAbort(Duration::from_millis(4999), 504)
        );
        let quick = Decision::Delay(Duration::from_millis(300));
        assert_eq!(within_deadline(quick, deadline), quick);
        assert_eq!(within_deadline(slow, None), slow);
    }

    #[test]
    fn an_aborted_grpc_call_carries_its_code() {
        let response: http::Response<String> = aborted(Protocol::Grpc, 503);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], "14");
        let response: http::Response<String> = aborted(Protocol::Http, 500);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
