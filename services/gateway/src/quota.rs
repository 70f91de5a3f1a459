//! Metering: every authenticated request counts against its principal's quota ([`meter`], the
//! step after authentication).
//!
//! The quota service counts (atomic windows in Redis, shared by every replica); a gateway leases
//! small slices of a principal's window from it and admits from them ([`Leases`]), so the count
//! stays exact at a gRPC hop per slice rather than per request. When it cannot
//! answer, the request is counted by [`LocalQuota`] instead — an approximate limit in this
//! process — and the answer is marked degraded: a metering outage must not become an API outage,
//! nor an unlimited one.

mod leases;
mod local;

pub use leases::{LeaseConfig, Leased, Leases};
pub use local::LocalQuota;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use mesh_proto::quota::QuotaStatus;
use serde::{Deserialize, Serialize};

use crate::authn::Principal;
use crate::context::MESH_FALLBACK;
use crate::error::ApiError;
use crate::fallback::{Fallback, LastKnownGood};

/// A principal's last known quota status, remembered by `GET /v1/quota` (key [`known_key`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownQuota {
    pub plan: String,
    pub limit: u64,
    pub used: u64,
    pub remaining: u64,
    /// Unix seconds when the window resets.
    pub reset_at: i64,
    #[serde(default)]
    pub window_seconds: u64,
}

impl From<QuotaStatus> for KnownQuota {
    fn from(s: QuotaStatus) -> Self {
        Self {
            plan: s.plan,
            limit: s.limit,
            used: s.used,
            remaining: s.remaining,
            reset_at: s.reset_at,
            window_seconds: s.window_seconds,
        }
    }
}

/// The last-known-good key of a principal's quota status.
pub fn known_key(principal: &str) -> String {
    format!("quota:{principal}")
}

/// How a request was counted.
#[derive(Debug)]
pub struct Metered {
    pub status: QuotaStatus,
    /// Counted by this process because the quota service could not answer.
    pub local: bool,
}

/// What metering needs: the leases of the quota service's windows, the local limit kept while
/// it is down, and the remembered statuses that seed it. The state of the [`meter`] step.
#[derive(Clone, Debug)]
pub struct Meter {
    leases: Arc<Leases>,
    local: Arc<LocalQuota>,
    lkg: LastKnownGood,
}

// === impl Meter ===

impl Meter {
    pub fn new(leases: Arc<Leases>, local: Arc<LocalQuota>, lkg: LastKnownGood) -> Self {
        Self { leases, local, lkg }
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    /// Counts one request against the quota service's window (through this gateway's lease), or
    /// locally when the service cannot answer.
    pub async fn consume(&self, principal: &Principal) -> Metered {
        match self.leases.take(&principal.user_id).await {
            leases::Leased::Status(status) => {
                self.local.observe(&principal.user_id, &status);
                Metered { status, local: false }
            }
            leases::Leased::Failed(failure) => {
                let seed = if self.local.knows(&principal.user_id) {
                    None
                } else {
                    self.lkg.recall::<KnownQuota>(&known_key(&principal.user_id)).await.map(|s| s.value)
                };
                let status = self.local.consume(&principal.user_id, seed, mesh_core::ids::unix_now());
                tracing::info!(code = ?failure.status.code(), allowed = status.allowed, remaining = status.remaining,
                    "quota service failed; metered locally");
                metrics::counter!("gateway_quota_local_total").increment(1);
                Metered { status, local: true }
            }
        }
    }
}

/// The step after [`crate::authn::authenticate`]: meters the request against its principal's
/// quota (429 past it) and adds the `RateLimit-*` headers. An answer metered locally because the
/// quota service was down is marked `x-mesh-fallback: degraded` (unless the handler marked it
/// already: its mark says more about the body).
pub async fn meter(State(meter): State<Arc<Meter>>, req: Request, next: Next) -> Result<Response, ApiError> {
    // Only behind `authenticate`; without a principal nothing is served (fail closed).
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return Err(ApiError::unauthorized("this route needs a principal"));
    };
    let metered = meter.consume(&principal).await;
    let status = &metered.status;
    let degraded = HeaderValue::from_static(Fallback::Degraded.as_str());
    if !status.allowed {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota-exceeded",
            "Quota exceeded",
            format!(
                "the {} plan allows {} requests per window; it resets at {}",
                status.plan, status.limit, status.reset_at
            ),
        )
        .with_retry_after(seconds_until_reset(status));
        for (name, value) in headers(status) {
            err = err.with_header(name, value);
        }
        if metered.local {
            err = err.with_header(HeaderName::from_static(MESH_FALLBACK), degraded);
        }
        return Err(err);
    }
    let mut response = next.run(req).await;
    let response_headers = response.headers_mut();
    response_headers.extend(headers(status));
    if metered.local && !response_headers.contains_key(MESH_FALLBACK) {
        response_headers.insert(MESH_FALLBACK, degraded);
    }
    Ok(response)
}

pub fn seconds_until_reset(status: &QuotaStatus) -> u64 {
    (status.reset_at - mesh_core::ids::unix_now()).max(1) as u64
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (seconds until the window resets).
pub fn headers(status: &QuotaStatus) -> [(HeaderName, HeaderValue); 3] {
    [
        (HeaderName::from_static("ratelimit-limit"), HeaderValue::from(status.limit)),
        (HeaderName::from_static("ratelimit-remaining"), HeaderValue::from(status.remaining)),
        (HeaderName::from_static("ratelimit-reset"), HeaderValue::from(seconds_until_reset(status))),
    ]
}
