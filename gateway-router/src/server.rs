//! The router's HTTP server: HTTP/1.1 and h2c on one port, with client limits.
//!
//! Served through hyper-util's builder rather than `axum::serve`, which sets no timer: hyper
//! enforces `header_read_timeout` only with one, and that timeout is what cuts off a client that
//! sends its headers a byte at a time (slowloris) or idles on a keep-alive connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use mesh_core::admin::{self, Readiness};
use mesh_core::shutdown::Drain;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::framing::FramingGuard;
use crate::state::RouterState;
use crate::{proxy, status};

/// Paths the router answers itself; everything else is classified and forwarded.
const OWN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics", "/mesh/status", "/openapi.json"];

/// Accepts connections until `drain` fires, then lets open ones finish (at most 10 s).
pub async fn run(listener: TcpListener, state: Arc<RouterState>, drain: Drain) -> anyhow::Result<()> {
    let readiness = Readiness::new(drain.clone());
    readiness.set_started();
    let own = admin::router(readiness).merge(
        Router::new()
            .route("/mesh/status", get(status::status_page))
            .route("/openapi.json", get(status::openapi))
            .with_state(state.clone()),
    );

    let limits = &state.cfg.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)));

    let graceful = GracefulShutdown::new();
    let stop = drain.signaled();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (stream, ambiguous) = FramingGuard::new(stream);
                let state = state.clone();
                let own = own.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let state = state.clone();
                    let own = own.clone();
                    let ambiguous = ambiguous.swap(false, std::sync::atomic::Ordering::AcqRel);
                    async move {
                        if ambiguous {
                            return Ok::<_, Infallible>(refuse_ambiguous(&request));
                        }
                        Ok::<_, Infallible>(handle(state, own, peer, request).await)
                    }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("connections still open 10s after shutdown; closing them"),
    }
    Ok(())
}

/// 400 for a request that carried both Content-Length and Transfer-Encoding; the connection
/// closes after it (hyper does not keep such a connection alive).
fn refuse_ambiguous(request: &Request<Incoming>) -> Response<Body> {
    let id = crate::headers::request_id(request.headers());
    metrics::counter!("router_refused_framing_total").increment(1);
    let mut response = proxy::problem(
        http::StatusCode::BAD_REQUEST,
        "ambiguous-framing",
        "Ambiguous framing",
        "a request may not carry both Content-Length and Transfer-Encoding",
        &id,
    );
    response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

async fn handle(
    state: Arc<RouterState>,
    own: Router,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    if OWN_PATHS.contains(&request.uri().path()) {
        return match own.oneshot(request.map(Body::new)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    proxy::forward(state, peer, request).await
}
