//! The forwarding hop: classify, admit, pick an instance, forward, and fail over when safe.
//!
//! Bodies stream both ways. A request is retryable when its method is idempotent (GET, HEAD,
//! OPTIONS, PUT, DELETE) or it is a POST with an `Idempotency-Key`, and its body is small
//! enough to keep (`retry.body_limit`); a failed connect is retried whatever the method, since
//! nothing reached the gateway. Retries go to another instance, at most `retry.max_attempts`
//! attempts in all, and each takes from the pool's retry budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::classify::classify;
use crate::headers::{IDEMPOTENCY_KEY, REQUEST_ID, prepare_forwarded, strip_hop_by_hop};
use crate::pool::{InFlight, Outcome, Pool};
use crate::state::RouterState;

/// A problem+json answer from the router itself.
pub fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    request_id: &str,
) -> Response<Body> {
    let body = mesh_core::problem::body(status.as_u16(), slug, title, detail, request_id).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mesh_core::problem::CONTENT_TYPE));
    if let Ok(id) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, id);
    }
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS | StatusCode::BAD_GATEWAY
    ) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The request body as it will be sent: kept (so it can be sent again) or streamed once.
enum Payload {
    Kept(Bytes),
    Streamed(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Kept(bytes) => Some(Body::from(bytes.clone())),
            Self::Streamed(body) => body.take(),
        }
    }

    fn replayable(&self) -> bool {
        matches!(self, Self::Kept(_))
    }
}

/// How one attempt ended.
enum Attempt {
    Answered(Response<Incoming>),
    /// Nothing reached the instance (connect failed): safe to retry for any request.
    NotSent(String),
    /// The request may have reached the instance; it failed before any response byte.
    Failed(String),
    TimedOut,
}

/// Forwards one client request. `peer` is the client's address.
pub async fn forward(
    state: Arc<RouterState>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<Body> {
    // The request's span continues the client's trace (or starts one); each attempt is a child
    // span whose context travels to the gateway in `traceparent`.
    let span = tracing::info_span!(
        "router.request",
        request_id = tracing::field::Empty,
        pool = tracing::field::Empty,
        trace_id = tracing::field::Empty
    );
    mesh_core::trace::continue_from(&span, request.headers());
    if let Some(trace_id) = mesh_core::trace::trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    route(state, peer, request).instrument(span).await
}

async fn route(state: Arc<RouterState>, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let id = crate::headers::request_id(request.headers());
    tracing::Span::current().record("request_id", id.as_str());
    let (mut parts, body) = request.into_parts();

    // A request with both Content-Length and Transfer-Encoding was refused before this point
    // (`framing`): hyper drops one of them from the parsed headers.
    let content_length = match parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
    {
        Some(None) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-framing",
                "Invalid Content-Length",
                "Content-Length is not a number",
                &id,
            );
        }
        Some(Some(n)) => Some(n),
        None => None,
    };
    let limits = &state.cfg.limits;
    if content_length.is_some_and(|n| n > limits.max_body_bytes) {
        return problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            &format!("the body may be at most {} bytes", limits.max_body_bytes),
            &id,
        );
    }

    let host =
        parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(parts.uri.host()).map(str::to_owned);
    let Some(pool_name) =
        classify(&state.cfg.rules, &parts.method, host.as_deref(), parts.uri.path(), &parts.headers)
    else {
        return problem(StatusCode::NOT_FOUND, "not-found", "Not found", "no route matches this path", &id);
    };
    tracing::Span::current().record("pool", pool_name);
    let Some(pool) = state.pools.get(pool_name).cloned() else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "this route's pool is not configured",
            &id,
        );
    };
    if !state.limiter.allow(peer.ip()).await {
        metrics::counter!("router_rate_limited_total").increment(1);
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            "this client is sending too fast; slow down",
            &id,
        );
    }
    // Bulkhead: a full pool sheds at once, and never delays the other pool.
    let Some(permit) = pool.admit() else {
        metrics::counter!("router_shed_total", "pool" => pool.name.clone()).increment(1);
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Service overloaded",
            &format!("the {} gateways are at capacity, retry shortly", pool.name),
            &id,
        );
    };

    let idempotent =
        matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
            || (parts.method == Method::POST && parts.headers.contains_key(IDEMPOTENCY_KEY));
    let empty = hyper::body::Body::is_end_stream(&body);
    let keepable = empty || content_length.is_some_and(|n| n <= state.cfg.retry.body_limit as u64);
    let limited = http_body_util::Limited::new(body, limits.max_body_bytes as usize);
    let mut payload = if idempotent && keepable {
        match limited.collect().await {
            Ok(collected) => Payload::Kept(collected.to_bytes()),
            Err(_) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-body",
                    "Unreadable body",
                    "the request body could not be read",
                    &id,
                );
            }
        }
    } else {
        Payload::Streamed(Some(Body::new(limited)))
    };

    prepare_forwarded(&mut parts.headers, peer, &id);
    pool.deposit();
    let mut tried: Vec<SocketAddr> = Vec::new();
    let max_attempts = state.cfg.retry.max_attempts;
    let mut last_failure: Option<Response<Body>> = None;
    for attempt in 1..=max_attempts {
        let Some(instance) = pool.pick(&tried) else {
            if attempt == 1 {
                metrics::counter!("router_no_healthy_instance_total", "pool" => pool.name.clone())
                    .increment(1);
                return finish(
                    &pool,
                    started,
                    problem(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "Service unavailable",
                        &format!("no healthy {} gateway instance, retry shortly", pool.name),
                        &id,
                    ),
                );
            }
            break;
        };
        // A retry is taken from the budget only when there is somewhere to send it.
        if attempt > 1 && !pool.withdraw() {
            tracing::warn!(request_id = %id, pool = %pool.name, "retry budget spent; not retrying");
            break;
        }
        tried.push(instance.addr);
        let Some(body) = payload.take() else { break };
        let mut request = Request::from_parts(parts.clone(), body);
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let Ok(uri) = format!("http://{}{path_and_query}", instance.addr).parse() else {
            return problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request is invalid",
                "the request target is invalid",
                &id,
            );
        };
        *request.uri_mut() = uri;

        let attempt_span = tracing::info_span!("router.attempt", instance = %instance.addr, attempt);
        mesh_core::trace::inject(&attempt_span, request.headers_mut());
        let in_flight = instance.start();
        let attempt_started = Instant::now();
        let outcome = send(&state, &pool, request).instrument(attempt_span).await;
        let retryable = |kind_safe: bool| attempt < max_attempts && kind_safe;
        match outcome {
            Attempt::Answered(response) => {
                let status = response.status();
                let latency = attempt_started.elapsed();
                let outcome = if response.headers().contains_key("x-mesh-fault") {
                    Outcome::Relayed { latency }
                } else {
                    Outcome::Answered { status: status.as_u16(), latency }
                };
                instance.record(outcome, &pool.name, &pool.health);
                let overloaded = matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE);
                if overloaded && retryable(payload.replayable()) {
                    tracing::info!(request_id = %id, pool = %pool.name, instance = %instance.addr, %status, attempt, "retrying elsewhere");
                    last_failure = Some(stream_back(response, in_flight, None));
                    continue;
                }
                return finish(&pool, started, stream_back(response, in_flight, Some(permit)));
            }
            Attempt::NotSent(error) => {
                instance.record(Outcome::Failed, &pool.name, &pool.health);
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, %error, attempt, "connect failed");
                last_failure = Some(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "Service unavailable",
                    &format!("no {} gateway could be reached, retry shortly", pool.name),
                    &id,
                ));
                // Nothing reached the gateway, so any request may go elsewhere, but a streamed
                // body was handed to this attempt and cannot be sent again.
                if !payload.replayable() {
                    break;
                }
            }
            Attempt::Failed(error) => {
                instance.record(Outcome::Failed, &pool.name, &pool.health);
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, %error, attempt, "instance failed before answering");
                last_failure = Some(problem(
                    StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    "Bad gateway",
                    &format!("the {} gateway failed before answering", pool.name),
                    &id,
                ));
                if !retryable(payload.replayable()) {
                    break;
                }
            }
            Attempt::TimedOut => {
                instance.record(Outcome::Failed, &pool.name, &pool.health);
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, attempt, "instance did not answer in time");
                last_failure = Some(problem(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "Gateway timeout",
                    &format!("the {} gateway did not answer in time", pool.name),
                    &id,
                ));
                if !retryable(payload.replayable()) {
                    break;
                }
            }
        }
    }
    let failure = last_failure.unwrap_or_else(|| {
        problem(
            StatusCode::BAD_GATEWAY,
            "bad-gateway",
            "Bad gateway",
            "the request could not be forwarded",
            &id,
        )
    });
    finish(&pool, started, failure)
}

/// One attempt, bounded by the attempt timeout (to response headers).
async fn send(state: &RouterState, pool: &Pool, request: Request<Body>) -> Attempt {
    match tokio::time::timeout(state.cfg.attempt_timeout, pool.client.request(request)).await {
        Ok(Ok(response)) => Attempt::Answered(response),
        Ok(Err(e)) if e.is_connect() => Attempt::NotSent(e.to_string()),
        Ok(Err(e)) => Attempt::Failed(e.to_string()),
        Err(_) => Attempt::TimedOut,
    }
}

/// The instance's response, streamed to the client; the guards live until the body ends.
fn stream_back(
    response: Response<Incoming>,
    in_flight: InFlight,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let guards = (in_flight, permit);
    let body = body.map_frame(move |frame| {
        let _ = &guards;
        frame
    });
    Response::from_parts(parts, Body::new(body))
}

fn finish(pool: &Pool, started: Instant, response: Response<Body>) -> Response<Body> {
    let status = response.status().as_u16().to_string();
    metrics::counter!("router_requests_total", "pool" => pool.name.clone(), "status" => status).increment(1);
    metrics::histogram!("router_request_duration_seconds", "pool" => pool.name.clone())
        .record(started.elapsed().as_secs_f64());
    response
}
