//! The layers of a [`ServiceChannel`](super::ServiceChannel)'s stack, outermost first, each a
//! `Layer`/`Service` pair. What a failure means (the breaker's health, whether to retry) is read
//! from [`Fault`], never decided here.
//!
//! Every layer takes the inner service it polled ready and leaves a fresh clone behind
//! (tower's ready-service contract), and answers with a boxed future.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tracing::Instrument;

use super::Health;
use crate::breaker::Breaker;
use crate::fault::Fault;

/// What every layer fails with.
pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(super) type Request = http::Request<tonic::body::Body>;
pub(super) type Response = http::Response<tonic::body::Body>;
pub(super) type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

pub(super) fn unavailable(message: String) -> BoxError {
    Box::new(tonic::Status::unavailable(message))
}

/// Takes the ready inner service, leaving a fresh clone in its place.
fn take<S: Clone>(inner: &mut S) -> S {
    let fresh = inner.clone();
    std::mem::replace(inner, fresh)
}

/// How a call ended, as the one failure model sees it: `None` when it succeeded. A transport
/// error is classified by its cause chain, so tonic's own deadline (the `grpc-timeout` it
/// enforces) is a timeout, never an UNAVAILABLE to retry.
pub(super) fn fault_of(result: &Result<Response, BoxError>) -> Option<Fault> {
    match result {
        Err(error) => Some(Fault::from_call_error(&**error)),
        Ok(response) => response
            .headers()
            .get("grpc-status")
            .and_then(|v| Fault::from_code(tonic::Code::from_bytes(v.as_bytes()))),
    }
}

// === impl Traced ===

/// A client span per call, child of the caller's current span, carried to the server as trace
/// context in the request headers; every layer below runs inside it.
#[derive(Clone, Debug)]
pub(super) struct Traced<S> {
    inner: S,
    service: Arc<str>,
}

#[derive(Clone, Debug)]
pub(super) struct TracedLayer(pub(super) Arc<str>);

impl<S> tower::Layer<S> for TracedLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner, service: self.0.clone() }
    }
}

impl<S> tower::Service<Request> for Traced<S>
where
    S: tower::Service<Request, Response = Response, Error = BoxError, Future = BoxFuture> + Clone,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> BoxFuture {
        let rpc = request.uri().path().to_owned();
        let span = tracing::info_span!("grpc.client", service = %self.service, rpc = %rpc);
        crate::trace::inject(&span, request.headers_mut());
        let call = span.in_scope(|| take(&mut self.inner).call(request));
        Box::pin(call.instrument(span))
    }
}

// === impl FailFast ===

/// With no healthy replica, fails at once with UNAVAILABLE (after waiting, at most the connect
/// timeout, for the first probes) instead of waiting in an empty balancer's queue.
#[derive(Clone, Debug)]
pub(super) struct FailFast<S> {
    inner: S,
    health: Arc<Health>,
}

#[derive(Clone, Debug)]
pub(super) struct FailFastLayer(pub(super) Arc<Health>);

impl<S> tower::Layer<S> for FailFastLayer {
    type Service = FailFast<S>;
    fn layer(&self, inner: S) -> FailFast<S> {
        FailFast { inner, health: self.0.clone() }
    }
}

impl<S> tower::Service<Request> for FailFast<S>
where
    S: tower::Service<Request, Response = Response, Error = BoxError, Future = BoxFuture>
        + Clone
        + Send
        + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        let (health, mut inner) = (self.health.clone(), take(&mut self.inner));
        Box::pin(async move {
            wait_for_a_replica(&health).await?;
            inner.call(request).await
        })
    }
}

/// Fails at once when no replica is healthy, after waiting (briefly) for the first probes.
async fn wait_for_a_replica(health: &Health) -> Result<(), BoxError> {
    if *health.healthy.borrow() > 0 {
        return Ok(());
    }
    let mut healthy = health.healthy.subscribe();
    let first_probes = async {
        // Wait while replicas remain unprobed and none is healthy yet.
        let _ = healthy.wait_for(|n| *n > 0 || health.pending.load(Ordering::Acquire) == 0).await;
    };
    let _ = tokio::time::timeout(health.first_probe_wait, first_probes).await;
    if *health.healthy.borrow() == 0 {
        return Err(unavailable("no healthy replica".into()));
    }
    Ok(())
}

// === impl Shed ===

/// The bulkhead: past `max_concurrency` calls in flight to the service, a call fails at once
/// with UNAVAILABLE (shed) rather than queue behind a service that is not keeping up.
#[derive(Clone, Debug)]
pub(super) struct Shed<S> {
    inner: S,
    limit: Arc<tokio::sync::Semaphore>,
    service: Arc<str>,
}

#[derive(Clone, Debug)]
pub(super) struct ShedLayer {
    pub(super) limit: Arc<tokio::sync::Semaphore>,
    pub(super) service: Arc<str>,
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;
    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, limit: self.limit.clone(), service: self.service.clone() }
    }
}

impl<S> tower::Service<Request> for Shed<S>
where
    S: tower::Service<Request, Response = Response, Error = BoxError, Future = BoxFuture>
        + Clone
        + Send
        + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        let (limit, service, mut inner) = (self.limit.clone(), self.service.clone(), take(&mut self.inner));
        Box::pin(async move {
            let _permit = limit.try_acquire_owned().map_err(|_| {
                metrics::counter!("grpc_client_shed_total", "service" => service.to_string()).increment(1);
                unavailable(format!("too many calls in flight to {service}"))
            })?;
            inner.call(request).await
        })
    }
}

// === impl Circuit ===

/// A call refused because the service's circuit is open: no replica was tried, so it is never
/// retried. tonic reads it as the UNAVAILABLE status it carries.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct CircuitOpen(#[source] tonic::Status);

/// The circuit breaker, per attempt: refused at once while the circuit is open; each outcome
/// (read from [`Fault`]: only the service's own trouble counts) feeds the breaker.
#[derive(Clone, Debug)]
pub(super) struct Circuit<S> {
    inner: S,
    breaker: Arc<Breaker>,
    service: Arc<str>,
}

#[derive(Clone, Debug)]
pub(super) struct CircuitLayer {
    pub(super) breaker: Arc<Breaker>,
    pub(super) service: Arc<str>,
}

impl<S> tower::Layer<S> for CircuitLayer {
    type Service = Circuit<S>;
    fn layer(&self, inner: S) -> Circuit<S> {
        Circuit { inner, breaker: self.breaker.clone(), service: self.service.clone() }
    }
}

impl<S> tower::Service<Request> for Circuit<S>
where
    S: tower::Service<Request, Response = Response> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = BoxError;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> BoxFuture {
        let breaker = self.breaker.clone();
        if !breaker.allow() {
            let status = tonic::Status::unavailable(format!("circuit open for {}", self.service));
            return Box::pin(std::future::ready(Err(Box::new(CircuitOpen(status)) as BoxError)));
        }
        let call = take(&mut self.inner).call(request);
        Box::pin(async move {
            let result = call.await.map_err(Into::into);
            breaker.record(!fault_of(&result).is_some_and(|f| f.counts_against_upstream()));
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breaker_refusal_reaches_the_caller_as_unavailable() {
        let refusal = CircuitOpen(tonic::Status::unavailable("circuit open for user"));
        let status = tonic::Status::from_error(Box::new(refusal));
        assert_eq!((status.code(), status.message()), (tonic::Code::Unavailable, "circuit open for user"));
    }
}
