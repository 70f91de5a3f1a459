//! The forwarding hop, in four steps: admit (classify, rate limit), prepare the body (kept for
//! retries or streamed, under the client limits, before any pool slot is taken), the failover
//! loop, and respond (every answer counted). Every answer the router makes itself comes from
//! one table, [`Refusal::problem`].
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

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use mesh_core::fault::{Fault, Retry};
use tokio::sync::OwnedSemaphorePermit;

use crate::access_log;
use crate::body::{ClientBody, ClientBodyError, Guarded};
use crate::classify::classify;
use crate::headers::{ClientHeaders, REQUEST_ID, RequestId, forward_headers, names, strip_hop_by_hop};
use crate::pool::{Counters, InFlight, Outcome, Pool};
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

/// Every answer the router gives itself instead of a gateway's.
#[derive(Debug)]
pub enum Refusal {
    BadContentLength,
    TooLarge(u64),
    NotFound,
    PoolMissing,
    RateLimited,
    /// The pool's request slots are taken.
    Shed(String),
    /// The pool's stream budget is spent.
    StreamsFull(String),
    NoHealthyInstance(String),
    Unreachable(String),
    BadGateway(String),
    Timeout(String),
    BadTarget,
    /// The client's body stalled, broke or was too large.
    ClientBody(ClientBodyError),
}

impl Refusal {
    /// The one table from a refusal to its problem answer.
    pub fn problem(&self, id: &str) -> Response<Body> {
        use StatusCode as S;
        let (status, slug, title, detail) = match self {
            Self::BadContentLength => (
                S::BAD_REQUEST,
                "bad-framing",
                "Invalid Content-Length",
                "Content-Length is not a number".into(),
            ),
            Self::TooLarge(max) => (
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body may be at most {max} bytes"),
            ),
            Self::NotFound => (S::NOT_FOUND, "not-found", "Not found", "no route matches this path".into()),
            Self::PoolMissing => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                "this route's pool is not configured".into(),
            ),
            Self::RateLimited => (
                S::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                "this client is sending too fast; slow down".into(),
            ),
            Self::Shed(pool) => (
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Service overloaded",
                format!("the {pool} gateways are at capacity, retry shortly"),
            ),
            Self::StreamsFull(pool) => (
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "Too many open streams",
                format!("the {pool} gateways hold as many streams as they may, retry shortly"),
            ),
            Self::NoHealthyInstance(pool) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                format!("no healthy {pool} gateway instance, retry shortly"),
            ),
            Self::Unreachable(pool) => (
                S::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                format!("no {pool} gateway could be reached, retry shortly"),
            ),
            Self::BadGateway(pool) => (
                S::BAD_GATEWAY,
                "bad-gateway",
                "Bad gateway",
                format!("the {pool} gateway failed before answering"),
            ),
            Self::Timeout(pool) => (
                S::GATEWAY_TIMEOUT,
                "timeout",
                "Gateway timeout",
                format!("the {pool} gateway did not answer in time"),
            ),
            Self::BadTarget => (
                S::BAD_REQUEST,
                "bad-request",
                "The request is invalid",
                "the request target is invalid".into(),
            ),
            Self::ClientBody(ClientBodyError::TimedOut) => (
                S::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timeout",
                "the request body did not arrive in time".into(),
            ),
            Self::ClientBody(ClientBodyError::TooLarge(max)) => (
                S::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                format!("the body may be at most {max} bytes"),
            ),
            Self::ClientBody(ClientBodyError::Broken(_)) => {
                (S::BAD_REQUEST, "bad-body", "Unreadable body", "the request body could not be read".into())
            }
        };
        let mut response = problem(status, slug, title, &detail, id);
        if let Self::ClientBody(_) = self {
            // The rest of the body is unread: the connection cannot carry another request.
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The request body as it will be sent: read whole (and so sendable again) or streamed once.
enum Payload {
    /// `replayable`: the request is idempotent, so it may be sent again after it may have
    /// reached a gateway. Any kept body may be sent again when nothing reached one.
    Kept {
        bytes: Bytes,
        replayable: bool,
    },
    Streamed(Option<Body>),
}

impl Payload {
    fn take(&mut self) -> Option<Body> {
        match self {
            Self::Kept { bytes, .. } => Some(Body::from(bytes.clone())),
            Self::Streamed(body) => body.take(),
        }
    }

    /// Safe to send again after an attempt that may have reached the gateway.
    fn replayable(&self) -> bool {
        matches!(self, Self::Kept { replayable: true, .. })
    }

    /// Still here to send again (after an attempt that reached nothing).
    fn resendable(&self) -> bool {
        matches!(self, Self::Kept { .. })
    }
}

/// How one attempt ended.
enum Attempt {
    Answered(Response<Incoming>),
    /// Nothing reached the instance (connect failed): safe to retry for any request.
    NotSent(String),
    /// The request may have reached the instance; it failed before any response byte.
    Failed(hyper_util::client::legacy::Error),
    TimedOut,
}

/// Forwards one client request. `peer` is the TCP peer, and `peer_headers` the forwarding
/// headers that name it (built once per connection); the client is found behind it.
pub async fn forward(
    state: Arc<RouterState>,
    peer: SocketAddr,
    peer_headers: &ClientHeaders,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let id = crate::headers::request_id(request.headers());
    let client = state.cfg.trusted_proxies.client_addr(peer.ip(), request.headers());
    let client = if client == peer_headers.client {
        std::borrow::Cow::Borrowed(peer_headers)
    } else {
        std::borrow::Cow::Owned(ClientHeaders::new(client))
    };
    let pool = classify_request(&state, &request);
    let span = RequestSpan::new(&id, pool, client.as_str());
    let access =
        access_log::Head::capture(&state.cfg.access_log, request.method(), request.uri(), request.headers());
    let (response, trace_id) = if !state.traced {
        // Built only if something logs within the request ([`RequestSpan`]).
        (route(&state, &client, pool, &id, &span, started, request).await, None)
    } else {
        // The request's span continues the client's trace (or starts one); each attempt is a
        // child span whose context travels to the gateway in `traceparent`.
        let traced = span.get();
        mesh_core::trace::continue_from(traced, request.headers());
        let trace_id = mesh_core::trace::trace_id(traced);
        if let Some(trace_id) = &trace_id {
            traced.record("trace_id", trace_id.as_str());
        }
        let instrumented = traced.clone();
        (route(&state, &client, pool, &id, &span, started, request).instrument(instrumented).await, trace_id)
    };
    if let Some(head) = &access {
        let entry = access_log::Entry {
            request_id: &id,
            trace_id: trace_id.as_deref(),
            client: client.as_str(),
            pool,
            upstream: &span.upstream,
            started,
        };
        access_log::record(&state.cfg.access_log, head, &entry, &response);
    }
    response
}

// === impl RequestSpan ===

/// The request's span (`router.request`: request id, pool, client, trace id). With an
/// OpenTelemetry layer exporting spans it is built at once and the request runs in it;
/// otherwise it is built only when something logs within the request (a retry, a failure, a
/// store that fails open), and that event runs in it. A span costs what its subscribers do
/// when it is built, and the JSON log layer formats its fields into a record then, for a span
/// that no event may ever name: that was more work than the rest of the router's own on a
/// request.
struct RequestSpan<'a> {
    id: &'a str,
    pool: Option<&'a str>,
    client: &'a str,
    span: std::sync::OnceLock<tracing::Span>,
    /// The attempts made, for the access log.
    upstream: access_log::Upstream,
}

impl<'a> RequestSpan<'a> {
    fn new(id: &'a str, pool: Option<&'a str>, client: &'a str) -> Self {
        Self { id, pool, client, span: std::sync::OnceLock::new(), upstream: access_log::Upstream::default() }
    }

    /// The span, built now if it was not yet. Built with its fields, so a subscriber that
    /// formats them does so once.
    fn get(&self) -> &tracing::Span {
        self.span.get_or_init(|| {
            tracing::info_span!(
                "router.request",
                request_id = self.id,
                pool = self.pool,
                client = self.client,
                trace_id = tracing::field::Empty
            )
        })
    }
}

/// The pool the rule table sends `request` to, if any.
fn classify_request<'s>(state: &'s RouterState, request: &Request<Incoming>) -> Option<&'s str> {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).or(request.uri().host());
    classify(&state.cfg.rules, request.method(), host, request.uri().path(), request.headers())
}

/// The slot a request holds in its pool while it runs (until its response body ends).
enum Slot {
    Request { _permit: OwnedSemaphorePermit },
    Upload { _permit: OwnedSemaphorePermit },
    Stream { _permit: OwnedSemaphorePermit },
}

async fn route(
    state: &RouterState,
    client: &ClientHeaders,
    pool_name: Option<&str>,
    id: &RequestId,
    span: &RequestSpan<'_>,
    started: Instant,
    request: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = request.into_parts();

    // 1. Admit: framing, the classification's pool, the client's rate.
    let (pool, content_length) = match admit(state, &parts, pool_name, client.client, span).await {
        Ok(admitted) => admitted,
        Err((pool, refusal)) => {
            let counters = pool.map_or(&state.unrouted, |p| &p.counters);
            return respond(counters, started, refusal.problem(id));
        }
    };
    let counters = &pool.counters;

    // 2. The body, under the client limits. One of known small size is read whole before any
    //    pool slot is taken, whatever the method: a slow or silent body then holds only its own
    //    connection. It is kept to be sent again only when that is safe (idempotent).
    let limits = &state.cfg.limits;
    let idempotent =
        matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE)
            || (parts.method == Method::POST && parts.headers.contains_key(&names::IDEMPOTENCY_KEY));
    let small = content_length.is_some_and(|n| n <= state.cfg.retry.body_limit as u64);
    let (payload, complete) = if hyper::body::Body::is_end_stream(&body) {
        (Payload::Kept { bytes: Bytes::new(), replayable: idempotent }, None)
    } else {
        let body =
            ClientBody::new(body, limits.max_body_bytes, limits.body_idle_timeout, limits.body_total_timeout);
        let complete = body.completion();
        if small {
            match body.collect().await {
                Ok(collected) => {
                    (Payload::Kept { bytes: collected.to_bytes(), replayable: idempotent }, Some(complete))
                }
                Err(e) => return respond(counters, started, Refusal::ClientBody(e).problem(id)),
            }
        } else {
            (Payload::Streamed(Some(Body::new(body))), Some(complete))
        }
    };

    // 3. A slot in the pool (bulkhead: a full pool sheds at once and never delays the other
    //    pool). A body that streams through (large or of unknown size) takes an upload slot,
    //    a budget of its own, so slow uploads cannot fill the request slots. A response that
    //    turns out to be a long stream moves to the stream budget ([`failover`]).
    let slot = match &payload {
        Payload::Kept { .. } => pool.admit().map(|p| Slot::Request { _permit: p }),
        Payload::Streamed(_) => pool.admit_upload().map(|p| Slot::Upload { _permit: p }),
    };
    let Some(slot) = slot else {
        counters.shed.increment(1);
        return respond(counters, started, Refusal::Shed(pool.name.clone()).problem(id));
    };

    forward_headers(&mut parts.headers, client, Some(id.header_value()));
    // No body, or one read whole: the client has sent everything.
    let complete = complete.as_deref().unwrap_or(&COMPLETE);
    let trail = Trail { id, span, traced: state.traced };
    let response = failover(state, pool, parts, payload, complete, slot, trail).await;
    respond(counters, started, response.unwrap_or_else(|refusal| refusal.problem(id)))
}

/// What a request without a body (or with one already read) says about its completion.
static COMPLETE: AtomicBool = AtomicBool::new(true);

/// Checks the framing, takes the pool the request was classified to and applies the client's
/// rate limit. A refusal names the pool when there is one.
async fn admit<'s>(
    state: &'s RouterState,
    parts: &http::request::Parts,
    pool_name: Option<&str>,
    client: IpAddr,
    span: &RequestSpan<'_>,
) -> Result<(&'s Arc<Pool>, Option<u64>), (Option<&'s Arc<Pool>>, Refusal)> {
    // A request with both Content-Length and Transfer-Encoding was refused before this point
    // (`framing`): hyper drops one of them from the parsed headers.
    let content_length = match parts
        .headers
        .get(header::CONTENT_LENGTH)
        .map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
    {
        Some(None) => return Err((None, Refusal::BadContentLength)),
        Some(Some(n)) => Some(n),
        None => None,
    };
    let max_body = state.cfg.limits.max_body_bytes;
    if content_length.is_some_and(|n| n > max_body) {
        return Err((None, Refusal::TooLarge(max_body)));
    }
    let Some(pool_name) = pool_name else {
        return Err((None, Refusal::NotFound));
    };
    let Some(pool) = state.pools.get(pool_name) else {
        // Not after `Config::validate`, which refuses a rule naming an unknown pool.
        return Err((None, Refusal::PoolMissing));
    };
    let allowed = state.limiter.allow(mesh_core::forwarded::client_key(client));
    // A shared limit may log (its store failing open): in the request's span.
    let allowed =
        if state.limiter.may_log() { allowed.instrument(span.get().clone()).await } else { allowed.await };
    if !allowed {
        metrics::counter!("router_rate_limited_total").increment(1);
        return Err((Some(pool), Refusal::RateLimited));
    }
    Ok((pool, content_length))
}

/// What the logs and traces of a request's attempts say of it: its id, its span, and whether
/// its spans are exported (an OpenTelemetry layer is installed).
#[derive(Clone, Copy)]
struct Trail<'a> {
    id: &'a str,
    span: &'a RequestSpan<'a>,
    traced: bool,
}

/// Sends the request to one instance after another until one answers or it is not safe (or
/// allowed by the budget) to try again.
async fn failover(
    state: &RouterState,
    pool: &Pool,
    parts: http::request::Parts,
    mut payload: Payload,
    complete: &AtomicBool,
    mut slot: Slot,
    trail: Trail<'_>,
) -> Result<Response<Body>, Refusal> {
    let id = trail.id;
    let name = || pool.name.clone();
    pool.deposit();
    let mut tried: Vec<SocketAddr> = Vec::new();
    let max_attempts = state.cfg.retry.max_attempts;
    let mut last_failure: Option<Result<Response<Body>, Refusal>> = None;
    for attempt in 1..=max_attempts {
        let Some(instance) = pool.pick(&tried) else {
            if attempt == 1 {
                pool.counters.no_healthy_instance.increment(1);
                return Err(Refusal::NoHealthyInstance(name()));
            }
            break;
        };
        // A retry is taken from the budget only when there is somewhere to send it.
        if attempt > 1 && !pool.withdraw() {
            trail.span.get().in_scope(|| {
                tracing::warn!(request_id = %id, pool = %pool.name, "retry budget spent; not retrying");
            });
            break;
        }
        tried.push(instance.addr);
        trail.span.upstream.attempt(instance.addr, attempt);
        let Some(body) = payload.take() else { break };
        let mut request = Request::from_parts(parts.clone(), body);
        let Some(uri) = instance.uri_for(&parts.uri) else {
            return Err(Refusal::BadTarget);
        };
        *request.uri_mut() = uri;

        let attempt_span = if trail.traced {
            tracing::info_span!("router.attempt", instance = %instance.addr, attempt)
        } else {
            tracing::Span::none()
        };
        mesh_core::trace::inject(&attempt_span, request.headers_mut());
        let in_flight = instance.start();
        let attempt_started = Instant::now();
        let outcome = send(state, pool, request).instrument(attempt_span).await;
        let retryable = |kind_safe: bool| attempt < max_attempts && kind_safe;
        // Whether the client had sent its whole body: an instance that failed before that may
        // have been waiting on the client ([`Fault::from_answer`]).
        let client_done = complete.load(Ordering::Acquire);
        match outcome {
            Attempt::Answered(response) => {
                let status = response.status();
                let relayed = response.headers().contains_key(&names::MESH_FAULT);
                let fault = Fault::from_answer(status.as_u16(), relayed, client_done);
                // Only a failure logs (a retry, an ejection): then in the request's span.
                let _logged = (fault.is_some() || status.is_server_error()).then(|| trail.span.get().enter());
                pool.record(&instance, Outcome::of(fault, Some(status.as_u16()), attempt_started.elapsed()));
                if fault.is_some_and(|f| f.retry == Retry::AnotherGateway) && retryable(payload.replayable())
                {
                    tracing::info!(request_id = %id, pool = %pool.name, instance = %instance.addr, %status, attempt, "retrying elsewhere");
                    last_failure = Some(Ok(stream_back(response, in_flight, None)));
                    continue;
                }
                // A long stream the client did not announce moves to the stream budget, so it
                // gives its request slot back.
                if !matches!(slot, Slot::Stream { .. }) && is_event_stream(&response) {
                    match pool.admit_stream() {
                        Some(permit) => slot = Slot::Stream { _permit: permit },
                        None => {
                            pool.counters.shed.increment(1);
                            return Err(Refusal::StreamsFull(name()));
                        }
                    }
                }
                return Ok(stream_back(response, in_flight, Some(slot)));
            }
            Attempt::NotSent(error) => {
                let _logged = trail.span.get().enter();
                let fault = Fault::from_attempt(true, false, false, client_done);
                pool.record(&instance, Outcome::of(Some(fault), None, attempt_started.elapsed()));
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, %error, attempt, "connect failed");
                last_failure = Some(Err(Refusal::Unreachable(name())));
                // Nothing reached the gateway, so any request may go elsewhere, but a streamed
                // body was handed to this attempt and cannot be sent again.
                if !payload.resendable() || attempt == max_attempts {
                    break;
                }
            }
            Attempt::Failed(error) => {
                let _logged = trail.span.get().enter();
                let cause = ClientBodyError::find(&error);
                let fault = Fault::from_attempt(false, false, cause.is_some(), client_done);
                pool.record(&instance, Outcome::of(Some(fault), None, attempt_started.elapsed()));
                if let Some(cause) = cause {
                    tracing::info!(request_id = %id, pool = %pool.name, %cause, "the client's body failed");
                    return Err(Refusal::ClientBody(cause.clone()));
                }
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, %error, attempt, "instance failed before answering");
                last_failure = Some(Err(Refusal::BadGateway(name())));
                if fault.retry != Retry::AnotherGateway || !retryable(payload.replayable()) {
                    break;
                }
            }
            Attempt::TimedOut => {
                let _logged = trail.span.get().enter();
                let fault = Fault::from_attempt(false, true, false, client_done);
                pool.record(&instance, Outcome::of(Some(fault), None, attempt_started.elapsed()));
                tracing::warn!(request_id = %id, pool = %pool.name, instance = %instance.addr, attempt, "instance did not answer in time");
                last_failure = Some(Err(Refusal::Timeout(name())));
                if fault.retry != Retry::AnotherGateway || !retryable(payload.replayable()) {
                    break;
                }
            }
        }
    }
    last_failure.unwrap_or(Err(Refusal::BadGateway(name())))
}

fn is_event_stream(response: &Response<Incoming>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// One attempt, bounded by the attempt timeout (to response headers).
async fn send(state: &RouterState, pool: &Pool, request: Request<Body>) -> Attempt {
    match tokio::time::timeout(state.cfg.attempt_timeout, pool.client.request(request)).await {
        Ok(Ok(response)) => Attempt::Answered(response),
        Ok(Err(e)) if e.is_connect() => Attempt::NotSent(e.to_string()),
        Ok(Err(e)) => Attempt::Failed(e),
        Err(_) => Attempt::TimedOut,
    }
}

/// The instance's response, streamed to the client; the guards live until the body ends.
fn stream_back(response: Response<Incoming>, in_flight: InFlight, slot: Option<Slot>) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, Body::new(Guarded::new(body, (in_flight, slot))))
}

/// Counts every answer, the router's own included.
pub fn respond(counters: &Counters, started: Instant, response: Response<Body>) -> Response<Body> {
    counters.answered(response.status(), started.elapsed());
    response
}
