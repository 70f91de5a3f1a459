//! What a gateway answers when a service cannot: the last known good answer, marked.
//!
//! Successful reads are remembered in the store (Redis in deployments, so every replica sees
//! them) under a key that names the route and, for private data, the principal — a fallback
//! never crosses principals. When a call fails for a reason the client did not cause
//! ([`is_outage`]), the handler answers from the snapshot and [`mark`]s the response with
//! `x-mesh-fallback`, `Age` and `Cache-Status` (RFC 9211). The store failing is a miss: this
//! tier fails open and never fails a request itself.

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use mesh_core::store::Store;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::MESH_FALLBACK;

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
}

/// A remembered answer and how old it is.
#[derive(Debug)]
pub struct Snapshot<T> {
    pub value: T,
    pub age: Duration,
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    value: T,
    /// Unix milliseconds when it was remembered.
    at: u64,
}

/// Last-known-good answers in the store.
#[derive(Clone, Debug)]
pub struct LastKnownGood {
    store: Store,
    ttl: Duration,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl LastKnownGood {
    /// Snapshots live `ttl` (bounded staleness).
    pub fn new(store: Store, ttl: Duration) -> Self {
        Self { store, ttl }
    }

    /// Remembers `value` under `key`. A store error is logged and ignored.
    pub async fn remember<T: Serialize>(&self, key: &str, value: &T) {
        let stored = Stored { value, at: now_millis() };
        if let Err(e) = self.store.set_json(&format!("gw:lkg:{key}"), &stored, Some(self.ttl)).await {
            tracing::debug!(error = %e, key, "could not remember a last-known-good answer");
        }
    }

    /// The answer last remembered under `key`, if any and if the store answers.
    pub async fn recall<T: DeserializeOwned>(&self, key: &str) -> Option<Snapshot<T>> {
        match self.store.get_json::<Stored<T>>(&format!("gw:lkg:{key}")).await {
            Ok(Some(stored)) => Some(Snapshot {
                value: stored.value,
                age: Duration::from_millis(now_millis().saturating_sub(stored.at)),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, key, "last-known-good store unavailable");
                None
            }
        }
    }
}

/// Whether a failed call is the service's trouble (down, overloaded, too slow, breaker open)
/// rather than an answer about the request. Only those are served from a fallback.
pub fn is_outage(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
    )
}

/// Marks a response as served by `fallback`: `x-mesh-fallback`, and for snapshots `Age` (whole
/// seconds) and `Cache-Status` (RFC 9211: served from the gateway's cache because the origin
/// failed).
pub fn mark(headers: &mut HeaderMap, fallback: Fallback, age: Option<Duration>) {
    headers.insert(MESH_FALLBACK, HeaderValue::from_static(fallback.as_str()));
    if let Some(age) = age {
        headers.insert(axum::http::header::AGE, HeaderValue::from(age.as_secs()));
        headers.insert("cache-status", HeaderValue::from_static("mesh-gateway; hit; detail=stale-if-error"));
    }
    metrics::counter!("gateway_fallbacks_total", "kind" => fallback.as_str()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembered_answers_come_back_with_their_age() {
        let lkg = LastKnownGood::new(Store::memory(), Duration::from_secs(60));
        assert!(lkg.recall::<String>("users/me:u1").await.is_none());
        lkg.remember("users/me:u1", &"ada".to_string()).await;
        let snapshot = lkg.recall::<String>("users/me:u1").await.unwrap();
        assert_eq!(snapshot.value, "ada");
        assert!(snapshot.age < Duration::from_secs(1));
        assert!(lkg.recall::<String>("users/me:u2").await.is_none(), "never crosses keys");
    }

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
        assert!(headers["cache-status"].to_str().unwrap().contains("hit"));
    }
}
