//! RED metrics and a span for every gRPC server call: a `Layer`/`Service` pair in front of the
//! tonic routes. The span continues the caller's trace from the `traceparent` metadata.
//!
//! - `grpc_server_requests_total{method, code}`
//! - `grpc_server_request_duration_seconds{method}` (time to response headers)
//!
//! The status is read from the response headers: tonic sends an error as a trailers-only
//! response (status in the headers); a success carries no status there and counts as `Ok`.
//! An unknown method (UNIMPLEMENTED) is labelled `unknown`, so clients cannot grow the label set.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

/// Adds [`GrpcMetrics`] to a server stack.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

/// Counts and times each call of the wrapped service.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        // One span per call, a child of the caller's span when the request carries a trace.
        let request_id = req
            .headers()
            .get(crate::headers::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let span = tracing::info_span!("grpc.server", rpc = %method, request_id = %request_id);
        crate::trace::continue_from(&span, req.headers());
        let call = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(tracing::Instrument::instrument(
            async move {
                let result = call.await;
                let code = match &result {
                    Ok(res) => res
                        .headers()
                        .get("grpc-status")
                        .map(|v| tonic::Code::from_bytes(v.as_bytes()))
                        .unwrap_or(tonic::Code::Ok),
                    Err(_) => tonic::Code::Unknown,
                };
                let method = if code == tonic::Code::Unimplemented { "unknown".to_owned() } else { method };
                let code = format!("{code:?}");
                metrics::counter!("grpc_server_requests_total", "method" => method.clone(), "code" => code)
                    .increment(1);
                metrics::histogram!("grpc_server_request_duration_seconds", "method" => method)
                    .record(started.elapsed().as_secs_f64());
                result
            },
            span,
        ))
    }
}
