//! The admin HTTP server every process runs beside its main listener.
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once started and until draining begins, else 503 (readiness: balancers
//!   stop sending before the process stops accepting).
//! - `GET /metrics`: Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::shutdown::Drain;

/// Whether this process should receive traffic.
#[derive(Clone, Debug)]
pub struct Readiness {
    started: Arc<AtomicBool>,
    drain: Drain,
}

impl Readiness {
    pub fn new(drain: Drain) -> Self {
        Self { started: Arc::default(), drain }
    }

    /// Call once the main listener serves.
    pub fn set_started(&self) {
        self.started.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.started.load(Ordering::Acquire) && !self.drain.is_draining()
    }
}

/// The admin routes, for serving or for `oneshot` tests.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    if readiness.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::telemetry::metrics_handle().render(),
    )
}

/// Serves the admin routes until `drain` fires.
pub async fn serve(listener: TcpListener, readiness: Readiness) -> std::io::Result<()> {
    let shutdown = readiness.drain.signaled();
    axum::serve(listener, router(readiness)).with_graceful_shutdown(shutdown).await
}
