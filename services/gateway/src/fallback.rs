//! What a gateway answers when a service cannot: the last known good answer, marked.
//!
//! Successful reads are remembered in the store (Redis in deployments, so every replica sees
//! them) under a key that names the route and, for private data, the principal — a fallback
//! never crosses principals. When a call fails for a reason the client did not cause
//! ([`is_outage`]), the handler answers from the snapshot and [`mark`]s the response with
//! `x-mesh-fallback`, `Age` and `Cache-Status` (RFC 9211). The store failing is a miss: this
//! tier fails open and never fails a request itself ([`LastKnownGood`]).
//!
//! The same snapshots make the response cache of public reads ([`read_cached`]): a snapshot
//! younger than the cache TTL answers without asking the service at all.
//!
//! Every marked response is counted and logged once, by the outermost middleware
//! ([`observe`]), as `gateway_fallbacks_total{kind, route}`.
//!
//! `Cache-Status` values (RFC 9211; the cache is named `mesh-gateway`):
//! - `mesh-gateway; hit; ttl=<s>`: answered from the response cache, fresh for `ttl` more seconds;
//! - `mesh-gateway; fwd=uri-miss; stored`: nothing cached for this request; asked the service
//!   and stored the answer (`fwd=stale` when an expired entry was there; no `stored` when the
//!   store did not take it);
//! - `mesh-gateway; fwd=stale; fwd-status=503; detail=stale-if-error`: the service was asked and
//!   failed (`fwd-status`: what the gateway would have answered), so the stored answer was served
//!   stale. Not `hit`: RFC 9211 reserves it for requests that were not forwarded.

mod lkg;

pub use lkg::{DEFAULT_REFRESH, DEFAULT_TIMEOUT, LastKnownGood, Snapshot};

use std::future::Future;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::context::MESH_FALLBACK;
use crate::error::ApiError;

pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why an answer did not come from the live service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// The last known good answer (identity).
    Cache,
    /// A reduced answer, e.g. the last cached list (business).
    Degraded,
    /// A write accepted into the durable queue, to be applied when the service is back.
    Queued,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Degraded => "degraded",
            Self::Queued => "queued",
        }
    }

    pub fn parse(value: &[u8]) -> Option<Self> {
        match value {
            b"cache" => Some(Self::Cache),
            b"degraded" => Some(Self::Degraded),
            b"queued" => Some(Self::Queued),
            _ => None,
        }
    }
}

/// Whether a failed call is the service's trouble (down, overloaded, too slow, breaker open)
/// rather than an answer about the request. Only those are served from a fallback.
pub fn is_outage(status: &tonic::Status) -> bool {
    mesh_core::fault::Fault::from_status(status).is_some_and(|f| f.is_outage())
}

/// Marks a response as served by `fallback`: `x-mesh-fallback`, and for snapshots `Age` (whole
/// seconds) and `Cache-Status` (served stale because the service failed; see the module doc).
/// Counting and logging happen once per response in [`observe`].
pub fn mark(headers: &mut HeaderMap, fallback: Fallback, age: Option<Duration>) {
    headers.insert(MESH_FALLBACK, HeaderValue::from_static(fallback.as_str()));
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
        headers.insert(CACHE_STATUS, stale_status(StatusCode::SERVICE_UNAVAILABLE));
    }
}

/// Counts and logs a response that carries `x-mesh-fallback`; called by the request middleware
/// inside the request's span (so the log line carries the request id). `route` is the matched
/// route template, so the label stays bounded.
pub fn observe(headers: &HeaderMap, route: &str) {
    let Some(value) = headers.get(MESH_FALLBACK) else { return };
    let kind = Fallback::parse(value.as_bytes()).map_or("other", Fallback::as_str);
    metrics::counter!("gateway_fallbacks_total", "kind" => kind, "route" => route.to_owned()).increment(1);
    let age = headers.get(header::AGE).and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(fallback = kind, route, age, "answered with a fallback");
}

/// How many answers of one gateway instance were fallbacks, by kind, and when the last was.
#[derive(Debug, Default)]
pub struct FallbackCounts {
    cache: std::sync::atomic::AtomicU64,
    degraded: std::sync::atomic::AtomicU64,
    queued: std::sync::atomic::AtomicU64,
    last_at: std::sync::atomic::AtomicI64,
}

impl FallbackCounts {
    /// Counts the response if it carries a fallback mark.
    pub fn count(&self, headers: &HeaderMap) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(kind) = headers.get(MESH_FALLBACK).and_then(|v| Fallback::parse(v.as_bytes())) else {
            return;
        };
        match kind {
            Fallback::Cache => self.cache.fetch_add(1, Relaxed),
            Fallback::Degraded => self.degraded.fetch_add(1, Relaxed),
            Fallback::Queued => self.queued.fetch_add(1, Relaxed),
        };
        self.last_at.store(mesh_core::ids::unix_now(), Relaxed);
    }

    /// `{cache, degraded, queued, last_at}` (last_at: unix seconds, 0 for never).
    pub fn view(&self) -> serde_json::Value {
        use std::sync::atomic::Ordering::Relaxed;
        serde_json::json!({
            "cache": self.cache.load(Relaxed),
            "degraded": self.degraded.load(Relaxed),
            "queued": self.queued.load(Relaxed),
            "last_at": self.last_at.load(Relaxed),
        })
    }
}

/// A short, fixed-length digest for store keys built from client input (queries, ids).
pub fn digest(input: &str) -> String {
    hex::encode(&Sha256::digest(input.as_bytes())[..16])
}

/// `Cache-Status` of an answer served stale because the service failed with `upstream`.
pub fn stale_status(upstream: StatusCode) -> HeaderValue {
    let value = format!("mesh-gateway; fwd=stale; fwd-status={}; detail=stale-if-error", upstream.as_u16());
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("mesh-gateway; fwd=stale"))
}

/// `Cache-Status` of a response-cache hit, fresh for `ttl` more.
pub fn hit_status(ttl: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("mesh-gateway; hit; ttl={}", ttl.as_secs()))
        .unwrap_or(HeaderValue::from_static("mesh-gateway; hit"))
}

/// `Cache-Status` of an answer fetched from the service (`expired`: an entry was there but too
/// old; `stored`: the answer is now cached).
pub fn forwarded_status(expired: bool, stored: bool) -> HeaderValue {
    HeaderValue::from_static(match (expired, stored) {
        (false, true) => "mesh-gateway; fwd=uri-miss; stored",
        (false, false) => "mesh-gateway; fwd=uri-miss",
        (true, true) => "mesh-gateway; fwd=stale; stored",
        (true, false) => "mesh-gateway; fwd=stale",
    })
}

/// A snapshot answered in place of a failed call: marked, with `"degraded": true` in the body
/// of a degraded answer (when the body is an object).
pub fn stale_response(mut body: Value, fallback: Fallback, age: Duration, upstream: StatusCode) -> Response {
    if fallback == Fallback::Degraded
        && let Some(object) = body.as_object_mut()
    {
        object.insert("degraded".into(), Value::Bool(true));
    }
    let mut response = Json(body).into_response();
    mark(response.headers_mut(), fallback, Some(age));
    response.headers_mut().insert(CACHE_STATUS, stale_status(upstream));
    response
}

/// A live answer: remembered under `key` for later outages (when it changed, or now and then:
/// [`LastKnownGood::remember_live`]), then answered.
pub async fn live<T: Serialize>(lkg: &LastKnownGood, key: &str, value: &T) -> Response {
    // Serialised once: the same bytes are hashed for the snapshot and answered.
    let Ok(json) = serde_json::to_vec(value) else {
        return Json(value).into_response();
    };
    lkg.remember_live_json(key, &json, value).await;
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json).into_response()
}

/// After a failed call to `service`: the snapshot under `key`, marked as `fallback`, when the
/// failure is an outage and a snapshot exists; else the error the failure maps to (an outage
/// without a snapshot is a 503 with `Retry-After`, or 504 for a timeout).
pub async fn after_failure(
    lkg: &LastKnownGood,
    key: &str,
    fallback: Fallback,
    service: &'static str,
    failure: &tonic::Status,
) -> Result<Response, ApiError> {
    let error = ApiError::from_status(service, failure);
    if !is_outage(failure) {
        return Err(error);
    }
    match lkg.recall::<Value>(key).await {
        Some(snapshot) => Ok(stale_response(snapshot.value, fallback, snapshot.age, error.status)),
        None => Err(error),
    }
}

/// A public read through the response cache: a snapshot younger than `fresh_for` answers at
/// once (`hit`); otherwise `live` is called and its answer stored; if `live` fails with an
/// outage, the snapshot of any age answers, degraded. Only for answers that are the same for
/// every principal. `fresh_for` zero turns the cache off (snapshots still serve outages).
pub async fn read_cached<T, F>(
    lkg: &LastKnownGood,
    key: &str,
    fresh_for: Duration,
    service: &'static str,
    live: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: Future<Output = Result<T, tonic::Status>>,
{
    let cached = if fresh_for.is_zero() { None } else { lkg.recall::<Value>(key).await };
    if let Some(snapshot) = &cached
        && snapshot.age < fresh_for
    {
        let mut response = Json(&snapshot.value).into_response();
        let headers = response.headers_mut();
        headers.insert(header::AGE, HeaderValue::from(snapshot.age.as_secs()));
        headers.insert(CACHE_STATUS, hit_status(fresh_for - snapshot.age));
        metrics::counter!("gateway_response_cache_total", "result" => "hit").increment(1);
        return Ok(response);
    }
    match live.await {
        Ok(value) => {
            let stored = lkg.remember(key, &value).await;
            let mut response = Json(&value).into_response();
            response.headers_mut().insert(CACHE_STATUS, forwarded_status(cached.is_some(), stored));
            metrics::counter!("gateway_response_cache_total", "result" => "miss").increment(1);
            Ok(response)
        }
        Err(failure) => {
            let error = ApiError::from_status(service, &failure);
            if !is_outage(&failure) {
                return Err(error);
            }
            let snapshot = match cached {
                Some(snapshot) => Some(snapshot),
                None if fresh_for.is_zero() => lkg.recall::<Value>(key).await,
                None => None,
            };
            match snapshot {
                Some(s) => Ok(stale_response(s.value, Fallback::Degraded, s.age, error.status)),
                None => Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use mesh_core::store::Store;

    #[test]
    fn only_service_trouble_counts_as_an_outage() {
        assert!(is_outage(&tonic::Status::unavailable("")));
        assert!(is_outage(&tonic::Status::deadline_exceeded("")));
        assert!(is_outage(&tonic::Status::cancelled("")));
        assert!(!is_outage(&tonic::Status::not_found("")));
        assert!(!is_outage(&tonic::Status::invalid_argument("")));
        assert!(!is_outage(&tonic::Status::permission_denied("")));
    }

    #[test]
    fn marks_carry_age_and_cache_status() {
        let mut headers = HeaderMap::new();
        mark(&mut headers, Fallback::Cache, Some(Duration::from_secs(42)));
        assert_eq!(headers[MESH_FALLBACK], "cache");
        assert_eq!(headers["age"], "42");
        assert_eq!(headers["cache-status"], "mesh-gateway; fwd=stale; fwd-status=503; detail=stale-if-error");
        let mut headers = HeaderMap::new();
        mark(&mut headers, Fallback::Queued, None);
        assert_eq!(headers[MESH_FALLBACK], "queued");
        assert!(!headers.contains_key("age") && !headers.contains_key("cache-status"));
    }

    #[test]
    fn cache_status_values_follow_rfc_9211() {
        assert_eq!(hit_status(Duration::from_millis(29_900)), "mesh-gateway; hit; ttl=29");
        assert_eq!(forwarded_status(false, true), "mesh-gateway; fwd=uri-miss; stored");
        assert_eq!(forwarded_status(true, false), "mesh-gateway; fwd=stale");
        assert_eq!(
            stale_status(StatusCode::GATEWAY_TIMEOUT),
            "mesh-gateway; fwd=stale; fwd-status=504; detail=stale-if-error"
        );
    }

    #[test]
    fn digests_are_short_and_stable() {
        assert_eq!(digest("q=tea"), digest("q=tea"));
        assert_ne!(digest("q=tea"), digest("q=teapot"));
        assert_eq!(digest(&"x".repeat(10_000)).len(), 32);
    }

    async fn body(response: Response) -> Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn the_response_cache_hits_misses_and_serves_stale_on_outage() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        let ttl = Duration::from_secs(30);
        let miss =
            read_cached(&lkg, "k", ttl, "articles", async { Ok::<_, tonic::Status>(1) }).await.unwrap();
        assert_eq!(miss.headers()["cache-status"], "mesh-gateway; fwd=uri-miss; stored");
        let hit = read_cached(&lkg, "k", ttl, "articles", async { Ok::<_, tonic::Status>(2) }).await.unwrap();
        assert!(hit.headers()["cache-status"].to_str().unwrap().starts_with("mesh-gateway; hit"));
        assert_eq!(body(hit).await, 1, "a hit does not ask the service");

        // Expired for the cache (ttl zero here) but still a snapshot for an outage.
        let down = async { Err::<Value, _>(tonic::Status::unavailable("down")) };
        let stale = read_cached(&lkg, "k", Duration::ZERO, "articles", down).await.unwrap();
        assert_eq!(stale.headers()[MESH_FALLBACK], "degraded");
        assert_eq!(body(stale).await, 1, "not an object: no degraded field to add");

        let down = async { Err::<Value, _>(tonic::Status::unavailable("down")) };
        let none = read_cached(&lkg, "other", ttl, "articles", down).await.unwrap_err();
        assert_eq!(none.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(none.retry_after.is_some());
        let refused = async { Err::<Value, _>(tonic::Status::invalid_argument("bad cursor")) };
        let refused = read_cached(&lkg, "k2", Duration::ZERO, "articles", refused).await.unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "only outages fall back");
    }

    #[tokio::test]
    async fn degraded_answers_say_so_in_the_body() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        lkg.remember("summary:u1", &serde_json::json!({"total": 3})).await;
        let down = tonic::Status::unavailable("down");
        let answer = after_failure(&lkg, "summary:u1", Fallback::Degraded, "analytics", &down).await.unwrap();
        assert_eq!(answer.headers()[MESH_FALLBACK], "degraded");
        assert!(answer.headers().contains_key("age"));
        assert_eq!(body(answer).await, serde_json::json!({"total": 3, "degraded": true}));
        let other = after_failure(&lkg, "summary:u2", Fallback::Degraded, "analytics", &down).await;
        assert_eq!(other.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE, "never crosses keys");
    }
}
