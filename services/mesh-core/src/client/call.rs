//! One call through a [`ServiceChannel`]: wait for a healthy replica, bulkhead, breaker, and
//! budgeted retries of idempotent calls. What a failure means (the breaker's health, whether
//! to retry) is read from [`Fault`], never decided here.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::transport::Channel;
use tower::retry::budget::Budget;
use tracing::Instrument;

use super::{Guard, Health, Idempotent, ServiceChannel};
use crate::fault::{Fault, Retry};

// === impl ServiceChannel ===

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<http::Request<tonic::body::Body>> for ServiceChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::poll_ready(&mut self.channel, cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        let health = self.health.clone();
        let guard = self.guard.clone();
        // A client span per call, child of the caller's current span, carried to the server.
        let rpc = request.uri().path().to_owned();
        let span = tracing::info_span!("grpc.client", service = %guard.service, rpc = %rpc);
        crate::trace::inject(&span, request.headers_mut());
        // Take the ready clone, leave a fresh one behind (tower's ready-service contract).
        let fresh = self.channel.clone();
        let channel = std::mem::replace(&mut self.channel, fresh);
        Box::pin(
            async move {
                wait_for_a_replica(&health).await?;
                let _permit = guard.limit.clone().try_acquire_owned().map_err(|_| {
                    metrics::counter!("grpc_client_shed_total", "service" => guard.service.clone())
                        .increment(1);
                    unavailable(format!("too many calls in flight to {}", guard.service))
                })?;
                guard.budget.deposit();
                if is_idempotent(&request) && guard.max_retries > 0 {
                    call_with_retries(channel, &guard, request).await
                } else {
                    call_once(channel, &guard, request).await
                }
            }
            .instrument(span),
        )
    }
}

fn unavailable(message: String) -> BoxError {
    Box::new(tonic::Status::unavailable(message))
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

/// Reads are idempotent by the mesh's naming convention (`Get…`, `List…`, `Verify…`); any other
/// call opts in with the [`Idempotent`] extension.
fn is_idempotent<B>(request: &http::Request<B>) -> bool {
    let method = request.uri().path().rsplit('/').next().unwrap_or("");
    request.extensions().get::<Idempotent>().is_some()
        || ["Get", "List", "Verify"].iter().any(|prefix| method.starts_with(prefix))
}

/// How a call ended, as the one failure model sees it: `None` when it succeeded. A transport
/// error is classified by its cause chain, so tonic's own deadline (the `grpc-timeout` it
/// enforces) is a timeout, never an UNAVAILABLE to retry.
fn fault_of<B>(result: &Result<http::Response<B>, tonic::transport::Error>) -> Option<Fault> {
    match result {
        Err(error) => Some(Fault::from_call_error(error)),
        Ok(response) => response
            .headers()
            .get("grpc-status")
            .and_then(|v| Fault::from_code(tonic::Code::from_bytes(v.as_bytes()))),
    }
}

/// Whether a call that ended so says the service is healthy, for its breaker.
fn healthy(fault: Option<Fault>) -> bool {
    !fault.is_some_and(|f| f.counts_against_upstream())
}

async fn call_once(
    mut channel: Channel,
    guard: &Guard,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    if !guard.breaker.allow() {
        return Err(unavailable(format!("circuit open for {}", guard.service)));
    }
    let result = tower::Service::call(&mut channel, request).await;
    guard.breaker.record(healthy(fault_of(&result)));
    result.map_err(Into::into)
}

/// Sends an idempotent call, again on another replica while the fault allows it (never a
/// timeout), retries and budget allow, and time remains of the call's deadline: a retry carries
/// only what remains as its `grpc-timeout`, so retries never stretch a deadline. The request
/// body (one encoded message for unary calls) is kept to be sent again.
async fn call_with_retries(
    mut channel: Channel,
    guard: &Guard,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    use http_body_util::BodyExt;
    let started = tokio::time::Instant::now();
    let (parts, body) = request.into_parts();
    let deadline = parts.headers.get("grpc-timeout").and_then(parse_grpc_timeout).map(|t| started + t);
    let bytes = body
        .collect()
        .await
        .map_err(|e| -> BoxError { Box::new(tonic::Status::internal(e.to_string())) })?
        .to_bytes();
    let rebuild = |remaining: Option<Duration>| {
        let mut request =
            http::Request::new(tonic::body::Body::new(http_body_util::Full::new(bytes.clone())));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        if let Some(remaining) = remaining
            && let Ok(value) = http::HeaderValue::from_str(&format!("{}m", remaining.as_millis().max(1)))
        {
            request.headers_mut().insert("grpc-timeout", value);
        }
        request
    };
    let mut retries = 0;
    let mut remaining = None;
    loop {
        if !guard.breaker.allow() {
            return Err(unavailable(format!("circuit open for {}", guard.service)));
        }
        tower::ServiceExt::ready(&mut channel).await.map_err(|e| -> BoxError { e.into() })?;
        let result = tower::Service::call(&mut channel, rebuild(remaining)).await;
        let fault = fault_of(&result);
        guard.breaker.record(healthy(fault));
        remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let time_left = remaining.is_none_or(|r| r >= MIN_RETRY_TIME);
        let again = fault.is_some_and(|f| f.retry == Retry::AnotherReplica) && retries < guard.max_retries;
        if again && time_left && guard.budget.withdraw() {
            retries += 1;
            metrics::counter!("grpc_client_retries_total", "service" => guard.service.clone()).increment(1);
            continue;
        }
        return result.map_err(Into::into);
    }
}

/// Less than this left of a deadline is not worth a retry.
const MIN_RETRY_TIME: Duration = Duration::from_millis(5);

/// A `grpc-timeout` value: digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let parse = |s: &str| parse_grpc_timeout(&http::HeaderValue::from_str(s).unwrap());
        assert_eq!(parse("5000m"), Some(Duration::from_secs(5)));
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse("x"), None);
        assert_eq!(parse(""), None);
    }
}
