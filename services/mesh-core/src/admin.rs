//! The admin HTTP server every process runs beside its main listener.
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once started and until draining begins, else 503 (readiness: balancers
//!   stop sending before the process stops accepting). With a store watched, the body also says
//!   whether the store answers: a component serves while Redis is down (the store tier fails
//!   open), so that is a detail of readiness, not a condition of it.
//! - `GET /metrics`: Prometheus text format.
//! - `GET|PUT|DELETE /fault`: injected latency and errors ([`crate::fault_inject`]); 404 unless
//!   the process runs with `admin_faults = true`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::fault_inject;
use crate::shutdown::Drain;

/// Whether this process should receive traffic.
#[derive(Clone, Debug)]
pub struct Readiness {
    started: Arc<AtomicBool>,
    drain: Drain,
    store: Arc<OnceLock<crate::store::Store>>,
}

impl Readiness {
    pub fn new(drain: Drain) -> Self {
        Self { started: Arc::default(), drain, store: Arc::default() }
    }

    /// Reports `store`'s state in the readiness detail.
    pub fn watch_store(&self, store: crate::store::Store) {
        let _ = self.store.set(store);
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
        .route(
            "/fault",
            get(fault_inject::get_fault)
                .put(fault_inject::put_fault)
                .post(fault_inject::put_fault)
                .delete(fault_inject::delete_fault),
        )
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let (status, mut body) = if readiness.is_ready() {
        (StatusCode::OK, String::from("ready\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, String::from("not ready\n"))
    };
    if let Some(store) = readiness.store.get() {
        match store.health(Duration::from_millis(200)).await {
            Ok(backend) => body.push_str(&format!("store: {backend} ok\n")),
            Err(e) => body.push_str(&format!("store: unreachable ({e}); failing open\n")),
        }
    }
    (status, body)
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::telemetry::render_metrics())
}

/// Serves the admin routes until `drain` fires.
pub async fn serve(listener: TcpListener, readiness: Readiness) -> std::io::Result<()> {
    let shutdown = readiness.drain.signaled();
    axum::serve(listener, router(readiness)).with_graceful_shutdown(shutdown).await
}
