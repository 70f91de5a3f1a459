//! Edge protection shared by both gateways, outermost first:
//!
//! 1. request context: request id, span, problem rendering, mesh headers, metrics (so even a
//!    shed or timed-out request gets a problem body carrying its id);
//! 2. panic → 500, so one bad request never takes the connection task down silently;
//! 3. load shedding in front of a global concurrency limit: past the limit, 503 at once instead
//!    of an unbounded queue;
//! 4. a whole-request timeout → 504;
//! 5. CORS when configured; response compression negotiated with the client;
//! 6. the body size limit (413).

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{CorsConfig, Limits};
use crate::context::{Instance, MESH_FALLBACK, REQUEST_ID, request_context};
use crate::error::ApiError;

/// Wraps `router` in the edge stack.
pub fn protect(router: Router, limits: &Limits, cors: &CorsConfig, instance: Instance) -> Router {
    let timeout = limits.request_timeout;
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(move |err: tower::BoxError| async move { overload_error(err, timeout) }))
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency))
        .timeout(timeout);
    let mut router = router.layer(DefaultBodyLimit::max(limits.body_bytes)).layer(CompressionLayer::new());
    if let Some(cors) = cors_layer(cors) {
        router = router.layer(cors);
    }
    router
        .layer(overload)
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }))
        .layer(axum::middleware::from_fn_with_state(instance, request_context))
}

fn overload_error(err: tower::BoxError, timeout: Duration) -> ApiError {
    if err.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout",
            "Request timeout",
            format!("the request did not complete within {timeout:?}"),
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("gateway_shed_total").increment(1);
        ApiError::unavailable("the gateway is at capacity, retry shortly")
    } else {
        tracing::error!(error = %err, "unexpected middleware error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "internal error")
    }
}

fn cors_layer(cfg: &CorsConfig) -> Option<CorsLayer> {
    if cfg.allowed_origins.is_empty() {
        return None;
    }
    let origins = if cfg.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(cfg.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static(mesh_core::headers::API_KEY),
                header::HeaderName::from_static(mesh_core::headers::IDEMPOTENCY_KEY),
                header::HeaderName::from_static(REQUEST_ID),
            ])
            .expose_headers([
                header::HeaderName::from_static(REQUEST_ID),
                header::HeaderName::from_static(MESH_FALLBACK),
                header::HeaderName::from_static("ratelimit-limit"),
                header::HeaderName::from_static("ratelimit-remaining"),
                header::HeaderName::from_static("ratelimit-reset"),
                header::RETRY_AFTER,
                header::LOCATION,
            ])
            .max_age(Duration::from_secs(600)),
    )
}
