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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use mesh_core::admin::{self, Readiness};
use mesh_core::shutdown::Drain;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::conn::{self, Activity, Closed, Connections, Tracked, WriteDeadline};
use crate::framing::FramingGuard;
use crate::headers::ClientHeaders;
use crate::state::RouterState;
use crate::{docs, proxy, status};

/// Paths the router answers itself on its public port; everything else is classified and
/// forwarded. `/metrics` and `/mesh/status` show instance addresses and breaker states, so they
/// live on the admin listener ([`admin_routes`]) unless `admin_on_public_port` is set.
const PUBLIC_OWN_PATHS: &[&str] = &["/healthz", "/readyz", "/openapi.json"];
const ADMIN_PATHS: &[&str] = &["/metrics", "/mesh/status"];

/// The router's own routes: probes, metrics, status and the merged OpenAPI document.
pub fn admin_routes(state: Arc<RouterState>, readiness: Readiness) -> Router {
    admin::router(readiness).merge(
        Router::new()
            .route("/mesh/status", get(status::status_page))
            .route("/openapi.json", get(status::openapi))
            .with_state(state),
    )
}

/// Serves the admin routes on `listener` until `drain` fires.
pub async fn run_admin(listener: TcpListener, state: Arc<RouterState>, readiness: Readiness, drain: Drain) {
    let app = admin_routes(state, readiness);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(drain.signaled()).await {
        tracing::warn!(error = %e, "admin listener failed");
    }
}

/// Accepts connections until `drain` fires, then lets open ones finish (at most 10 s).
pub async fn run(
    listener: TcpListener,
    state: Arc<RouterState>,
    readiness: Readiness,
    drain: Drain,
) -> anyhow::Result<()> {
    readiness.set_started();
    // The API reference page only here: its "Try it out" calls go to the origin that served it,
    // and only this port forwards them.
    let own = admin_routes(state.clone(), readiness).merge(docs::routes());

    let limits = state.cfg.limits.clone();
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
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_send_buf_size(limits.h2_max_send_buf_size)
        .keep_alive_interval(Some(limits.h2_keep_alive_interval))
        .keep_alive_timeout(limits.h2_keep_alive_timeout);
    let builder = Arc::new(builder);

    let connections = Connections::new(&limits);
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
                // Counted caps, refused at once: a trusted proxy carries many clients, so only
                // the global cap holds it.
                let per_client = !state.cfg.trusted_proxies.contains(peer.ip());
                let slot = match connections.admit(mesh_core::forwarded::client_key(peer.ip()), per_client) {
                    Ok(slot) => slot,
                    Err(reason) => {
                        reason.count();
                        tracing::debug!(%peer, reason = reason.as_str(), "connection refused");
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection =
                    serve_connection(stream, peer, state.clone(), own.clone(), builder.clone(), graceful.watcher());
                tokio::spawn(async move {
                    connection.await;
                    drop(slot);
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

/// One client connection, from its first byte to its end, under the connection deadlines:
/// silent sockets are closed after `first_byte_timeout`, a first request head that does not
/// arrive in `header_read_timeout` (HTTP/1 or HTTP/2 preface alike) and an idle connection
/// after `idle_timeout` are dropped ([`conn::watch`]), and writes to a client that stopped
/// reading fail after `write_timeout` ([`WriteDeadline`]).
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: Arc<RouterState>,
    own: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) {
    let limits = state.cfg.limits.clone();
    // From the accept on: the first request's head deadline counts the silent start too.
    let activity = Activity::new();
    if !conn::first_byte(&stream, limits.first_byte_timeout).await {
        Closed::FirstByte.count();
        return;
    }
    let (stream, ambiguous) = FramingGuard::new(stream);
    let stream = WriteDeadline::new(stream, limits.write_timeout);
    // What the forwarding headers say of this peer, built once: on most connections every
    // request's client is the peer.
    let peer_headers = Arc::new(ClientHeaders::new(
        state.cfg.trusted_proxies.client_addr(peer.ip(), &http::HeaderMap::new()),
    ));
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = activity.begin();
            let state = state.clone();
            let own = own.clone();
            let peer_headers = peer_headers.clone();
            let ambiguous = ambiguous.swap(false, std::sync::atomic::Ordering::AcqRel);
            async move {
                let response = if ambiguous {
                    refuse_ambiguous(&request)
                } else if let Some(injected) =
                    mesh_core::fault_inject::before_http(request.uri().path()).await
                {
                    // `meshctl chaos delay|fail router-N` (admin_faults on only).
                    injected
                } else {
                    handle(state, own, peer, &peer_headers, request).await
                };
                // The request is in flight until its response body has been sent.
                let (parts, body) = response.into_parts();
                Ok::<_, Infallible>(Response::from_parts(parts, Body::new(Tracked::new(body, in_flight))))
            }
        })
    };
    let connection = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
    let ended = async {
        if let Err(e) = connection.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    };
    conn::watch(ended, activity, &limits).await;
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
    peer_headers: &ClientHeaders,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    if PUBLIC_OWN_PATHS.contains(&path) || docs::PATHS.contains(&path) {
        return own_answer(own, request).await;
    }
    if ADMIN_PATHS.contains(&path) {
        if !state.cfg.admin_on_public_port {
            let id = crate::headers::request_id(request.headers());
            return proxy::Refusal::NotFound.problem(&id);
        }
        // Never before the rate limit: these pages cost more than a forwarded request.
        let client = state.cfg.trusted_proxies.client_addr(peer.ip(), request.headers());
        if !state.limiter.allow(mesh_core::forwarded::client_key(client)).await {
            let id = crate::headers::request_id(request.headers());
            return proxy::Refusal::RateLimited.problem(&id);
        }
        return own_answer(own, request).await;
    }
    proxy::forward(state, peer, peer_headers, request).await
}

async fn own_answer(own: Router, request: Request<Incoming>) -> Response<Body> {
    match own.oneshot(request.map(Body::new)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
