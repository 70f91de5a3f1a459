//! Budgeted retries of idempotent calls, as a layer: once more on another replica while the
//! call's [`Fault`] allows it (never a timeout, never a call the breaker refused), retries and
//! budget allow, and time remains of the call's deadline.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use super::Idempotent;
use super::layers::{BoxError, BoxFuture, CircuitOpen, Request, Response, fault_of};
use crate::fault::Retry as RetryVerdict;

/// Less than this left of a deadline is not worth a retry.
const MIN_RETRY_TIME: Duration = Duration::from_millis(5);

/// The rules one service's retries follow, shared by every clone of its channel.
pub(super) struct RetryPolicy {
    pub(super) service: Arc<str>,
    /// Every call deposits, every retry withdraws.
    pub(super) budget: TpsBudget,
    pub(super) max_retries: u32,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryPolicy").field("service", &self.service).finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
pub(super) struct RetryLayer(pub(super) Arc<RetryPolicy>);

impl<S> tower::Layer<S> for RetryLayer {
    type Service = Retrying<S>;
    fn layer(&self, inner: S) -> Retrying<S> {
        Retrying { inner, policy: self.0.clone() }
    }
}

// === impl Retrying ===

#[derive(Clone, Debug)]
pub(super) struct Retrying<S> {
    inner: S,
    policy: Arc<RetryPolicy>,
}

impl<S> tower::Service<Request> for Retrying<S>
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
        let policy = self.policy.clone();
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        policy.budget.deposit();
        if is_idempotent(&request) && policy.max_retries > 0 {
            Box::pin(call_with_retries(inner, policy, request))
        } else {
            inner.call(request)
        }
    }
}

/// Reads are idempotent by the mesh's naming convention (`Get…`, `List…`, `Verify…`); any other
/// call opts in with the [`Idempotent`] extension.
fn is_idempotent<B>(request: &http::Request<B>) -> bool {
    let method = request.uri().path().rsplit('/').next().unwrap_or("");
    request.extensions().get::<Idempotent>().is_some()
        || ["Get", "List", "Verify"].iter().any(|prefix| method.starts_with(prefix))
}

/// Sends an idempotent call, and again while its fault, the retries, the budget and the
/// deadline allow: a retry carries only what remains as its `grpc-timeout`, so retries never
/// stretch a deadline. The request body (one encoded message for unary calls) is kept to be
/// sent again.
async fn call_with_retries<S>(
    mut inner: S,
    policy: Arc<RetryPolicy>,
    request: Request,
) -> Result<Response, BoxError>
where
    S: tower::Service<Request, Response = Response, Error = BoxError, Future = BoxFuture>,
{
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
        tower::ServiceExt::ready(&mut inner).await?;
        let result = inner.call(rebuild(remaining)).await;
        if let Err(e) = &result
            && e.is::<CircuitOpen>()
        {
            // No replica was tried: nothing to try again.
            return result;
        }
        let fault = fault_of(&result);
        remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let time_left = remaining.is_none_or(|r| r >= MIN_RETRY_TIME);
        let again =
            fault.is_some_and(|f| f.retry == RetryVerdict::AnotherReplica) && retries < policy.max_retries;
        if again && time_left && policy.budget.withdraw() {
            retries += 1;
            metrics::counter!("grpc_client_retries_total", "service" => policy.service.to_string())
                .increment(1);
            continue;
        }
        return result;
    }
}

/// A `grpc-timeout` value: digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub(crate) fn parse_grpc_timeout(value: &http::HeaderValue) -> Option<Duration> {
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
    use std::sync::atomic::{AtomicU32, Ordering};

    use tower::{Layer, ServiceExt};

    use super::*;
    use crate::breaker::{Breaker, BreakerConfig};
    use crate::client::layers::CircuitLayer;

    type Inner = tower::util::BoxCloneService<Request, Response, BoxError>;

    /// A service answering `answer()` to every attempt, and how many attempts it saw.
    fn counting(answer: fn() -> Result<Response, BoxError>) -> (Inner, Arc<AtomicU32>) {
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = attempts.clone();
        let service = tower::service_fn(move |_: Request| {
            seen.fetch_add(1, Ordering::Relaxed);
            std::future::ready(answer())
        });
        (Inner::new(service), attempts)
    }

    fn retrying(inner: Inner) -> Retrying<Inner> {
        let budget = TpsBudget::new(Duration::from_secs(10), 100, 0.2);
        let policy = RetryPolicy { service: "test".into(), budget, max_retries: 1 };
        RetryLayer(Arc::new(policy)).layer(inner)
    }

    fn call(rpc: &str) -> Request {
        let mut request = http::Request::new(tonic::body::Body::empty());
        *request.uri_mut() = format!("http://svc/mesh.test.v1.Test/{rpc}").parse().unwrap();
        request.headers_mut().insert("grpc-timeout", http::HeaderValue::from_static("1000m"));
        request
    }

    fn answering(code: tonic::Code) -> Result<Response, BoxError> {
        Ok(tonic::Status::new(code, "test").into_http())
    }

    #[tokio::test]
    async fn an_unavailable_read_is_retried_once_and_a_write_never() {
        let (inner, attempts) = counting(|| answering(tonic::Code::Unavailable));
        retrying(inner.clone()).oneshot(call("GetThing")).await.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 2, "once more, on another replica");
        retrying(inner).oneshot(call("CreateThing")).await.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 3, "a write is sent once");
    }

    #[tokio::test]
    async fn a_timeout_or_a_refusal_is_never_retried() {
        let (inner, attempts) = counting(|| Err(Box::new(tonic::TimeoutExpired(()))));
        assert!(retrying(inner).oneshot(call("GetThing")).await.is_err());
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "a timed-out read is not sent again");
        let (inner, attempts) = counting(|| answering(tonic::Code::NotFound));
        retrying(inner).oneshot(call("GetThing")).await.unwrap();
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "an answer about the request stands");
    }

    #[tokio::test]
    async fn a_call_the_open_breaker_refused_is_not_retried() {
        let (inner, attempts) = counting(|| answering(tonic::Code::Unavailable));
        let cfg = BreakerConfig { consecutive_failures: 1, ..BreakerConfig::default() };
        let breaker = Arc::new(Breaker::new("test", cfg));
        let circuit = CircuitLayer { breaker, service: "test".into() }.layer(inner);
        let stack = retrying(Inner::new(circuit));
        // The first attempt fails and opens the circuit; the retry is refused by it.
        let refused = stack.clone().oneshot(call("GetThing")).await.unwrap_err();
        assert!(refused.is::<CircuitOpen>(), "{refused}");
        assert_eq!(attempts.load(Ordering::Relaxed), 1);
        let refused = stack.oneshot(call("GetThing")).await.unwrap_err();
        assert!(refused.is::<CircuitOpen>());
        assert_eq!(attempts.load(Ordering::Relaxed), 1, "refused at once: not even one attempt");
    }

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
