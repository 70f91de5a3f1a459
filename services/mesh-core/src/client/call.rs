//! One call through a [`ServiceChannel`]: wait for a healthy replica, bulkhead, breaker, and
//! budgeted retries of idempotent calls.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tonic::transport::Channel;
use tower::retry::budget::Budget;
use tracing::Instrument;

use super::{Guard, Health, Idempotent, ServiceChannel};

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

/// How a call ended, for the breaker and the retry decision.
enum Ended {
    Ok,
    /// The service answered with an error about the request: not its health.
    Refused,
    /// UNAVAILABLE or no answer: safe to try another replica for an idempotent call.
    Unavailable,
    /// Timed out or failed mid-way.
    Failed,
}

fn classify<B>(result: &Result<http::Response<B>, tonic::transport::Error>) -> Ended {
    let Ok(response) = result else { return Ended::Unavailable };
    match response.headers().get("grpc-status").map(|v| tonic::Code::from_bytes(v.as_bytes())) {
        None | Some(tonic::Code::Ok) => Ended::Ok,
        Some(tonic::Code::Unavailable) => Ended::Unavailable,
        Some(
            tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Internal
            | tonic::Code::Unknown,
        ) => Ended::Failed,
        Some(_) => Ended::Refused,
    }
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
    guard.breaker.record(matches!(classify(&result), Ended::Ok | Ended::Refused));
    result.map_err(Into::into)
}

/// Sends an idempotent call, again on UNAVAILABLE while retries and budget allow. The request
/// body (one encoded message for unary calls) is kept to be sent again.
async fn call_with_retries(
    mut channel: Channel,
    guard: &Guard,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    use http_body_util::BodyExt;
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|e| -> BoxError { Box::new(tonic::Status::internal(e.to_string())) })?
        .to_bytes();
    let rebuild = || {
        let mut request =
            http::Request::new(tonic::body::Body::new(http_body_util::Full::new(bytes.clone())));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.version_mut() = parts.version;
        *request.headers_mut() = parts.headers.clone();
        request
    };
    let mut retries = 0;
    loop {
        if !guard.breaker.allow() {
            return Err(unavailable(format!("circuit open for {}", guard.service)));
        }
        tower::ServiceExt::ready(&mut channel).await.map_err(|e| -> BoxError { e.into() })?;
        let result = tower::Service::call(&mut channel, rebuild()).await;
        let ended = classify(&result);
        guard.breaker.record(matches!(ended, Ended::Ok | Ended::Refused));
        let again = matches!(ended, Ended::Unavailable) && retries < guard.max_retries;
        if again && guard.budget.withdraw() {
            retries += 1;
            metrics::counter!("grpc_client_retries_total", "service" => guard.service.clone()).increment(1);
            continue;
        }
        return result.map_err(Into::into);
    }
}
