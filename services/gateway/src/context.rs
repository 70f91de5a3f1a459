//! The outermost middleware: request id, span, problem rendering, mesh headers, RED metrics.
//!
//! tower-http's request-id layer only fills a missing header; a gateway must also replace a
//! client-sent id that is not sane (too long, odd bytes) before it reaches logs, so this small
//! piece is hand-written.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::{Problem, problem_body, problem_for_status};

pub use mesh_core::headers::{MESH_FALLBACK, MESH_GATEWAY, REQUEST_ID};

/// The request's id: the client's when sane, else a new one. Handlers forward it to services.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The mesh's one rule for ids a client may choose ([`mesh_core::contracts::is_token`]).
fn is_sane(id: &str) -> bool {
    mesh_core::contracts::is_token(id)
}

/// Called once per answer, inside the request's span, with its headers and matched route: how
/// fallback answers are counted and logged without this module knowing the fallback policy.
pub type Observer = Arc<dyn Fn(&HeaderMap, &str) + Send + Sync>;

/// What the middleware needs to know about this gateway.
#[derive(Clone)]
pub struct Instance {
    pub name: HeaderValue,
    /// The whole-request deadline, from which every service call's deadline is derived.
    pub request_timeout: std::time::Duration,
    /// Sees every answer (the gateway counts and logs those marked `x-mesh-fallback`).
    pub observe: Observer,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.name)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// What service calls made while handling a request take from it: its deadline and its id.
#[derive(Clone, Debug)]
struct Current {
    /// When the request must be answered by (`None`: work outside a request, e.g. a refresher).
    deadline: Option<Instant>,
    id: RequestId,
}

tokio::task_local! {
    /// Set around each request's handler, and around background work that calls services.
    static CURRENT: Current;
}

/// Time left before the current request's deadline (`None` outside a request).
pub fn remaining() -> Option<std::time::Duration> {
    CURRENT.try_with(|c| c.deadline.map(|d| d.saturating_duration_since(Instant::now()))).ok().flatten()
}

/// The current request's id, forwarded to services (`None` outside a request).
pub fn request_id() -> Option<RequestId> {
    CURRENT.try_with(|c| c.id.clone()).ok()
}

/// Runs `work` under request id `id` (keeping the current deadline, if any): for work outside a
/// request, such as a background refresh, whose service calls should still carry an id.
pub async fn with_request_id<F: std::future::Future>(id: RequestId, work: F) -> F::Output {
    let deadline = CURRENT.try_with(|c| c.deadline).ok().flatten();
    CURRENT.scope(Current { deadline, id }, work).await
}

pub async fn request_context(State(instance): State<Instance>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id: Arc<str> =
        match req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).filter(|v| is_sane(v)) {
            Some(sent) => sent.into(),
            None => mesh_core::ids::new_id().into(),
        };
    let request_id = RequestId(id.clone());
    req.extensions_mut().insert(request_id.clone());
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    let route = route.unwrap_or_else(|| "unmatched".into());

    let span = tracing::info_span!(
        "gateway.request",
        request_id = %id,
        %method,
        route = %route,
        trace_id = tracing::field::Empty
    );
    mesh_core::trace::continue_from(&span, req.headers());
    if let Some(trace_id) = mesh_core::trace::trace_id(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    let current = Current { deadline: Some(started + instance.request_timeout), id: request_id };
    let mut response = CURRENT.scope(current, next.run(req).instrument(span.clone())).await;

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let is_problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(mesh_core::problem::CONTENT_TYPE.as_bytes()));
        if !is_problem {
            let problem =
                response.extensions_mut().remove::<Problem>().unwrap_or_else(|| problem_for_status(status));
            let body = problem_body(status, &problem, &id).to_string();
            *response.body_mut() = Body::from(body);
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(mesh_core::problem::CONTENT_TYPE));
            headers.remove(header::CONTENT_LENGTH);
        }
    }
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(MESH_GATEWAY, instance.name.clone());
    // Every answer is observed here, once, with its route (fallback answers are counted).
    span.in_scope(|| (instance.observe)(response.headers(), &route));

    let elapsed = started.elapsed();
    let method = method_label(&method);
    metrics::counter!("http_server_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status_label(status))
        .increment(1);
    metrics::histogram!("http_server_request_duration_seconds", "route" => route, "method" => method)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(status = status.as_u16(), latency_ms = elapsed.as_secs_f64() * 1000.0, "served");
    });
    response
}

/// The method as a label, without an allocation for the usual ones.
fn method_label(method: &axum::http::Method) -> std::borrow::Cow<'static, str> {
    use axum::http::Method;
    std::borrow::Cow::Borrowed(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => return std::borrow::Cow::Owned(method.to_string()),
    })
}

/// The status code as a label; the codes the gateway answers most often without an allocation.
fn status_label(status: axum::http::StatusCode) -> std::borrow::Cow<'static, str> {
    std::borrow::Cow::Borrowed(match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        other => return std::borrow::Cow::Owned(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_method_and_the_code() {
        use axum::http::{Method, StatusCode};
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"PURGE").unwrap()), "PURGE");
        assert_eq!(status_label(StatusCode::OK), "200");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "418");
    }

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(is_sane("abc-123_X.y:z"));
        assert!(!is_sane(""));
        assert!(!is_sane("has space"));
        assert!(!is_sane(&"a".repeat(129)));
        assert!(!is_sane("new\nline"));
    }
}
