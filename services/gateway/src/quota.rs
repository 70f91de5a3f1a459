//! Metering: every authenticated request counts against its principal's quota.
//!
//! The quota service counts (atomic windows in Redis, shared by every replica). When it cannot
//! answer, the request is counted by [`LocalQuota`] instead — an approximate limit in this
//! process — and the answer is marked degraded: a metering outage must not become an API outage,
//! nor an unlimited one.

mod local;

pub use local::LocalQuota;

use axum::http::{HeaderName, HeaderValue};
use mesh_proto::quota::{ConsumeRequest, QuotaStatus};
use serde::{Deserialize, Serialize};

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::state::AppState;

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

/// Counts one request with the quota service, or locally when it cannot answer.
pub async fn consume(state: &AppState, principal: &Principal, request_id: &RequestId) -> Metered {
    let request = ConsumeRequest { principal: principal.user_id.clone(), cost: 1 };
    match state
        .clients
        .quota
        .clone()
        .consume(grpc(request_id, state.clients.deadlines().quota, request))
        .await
    {
        Ok(response) => {
            let status = response.into_inner();
            state.local_quota.observe(&principal.user_id, &status);
            Metered { status, local: false }
        }
        Err(failure) => {
            let seed = if state.local_quota.knows(&principal.user_id) {
                None
            } else {
                state.lkg.recall::<KnownQuota>(&known_key(&principal.user_id)).await.map(|s| s.value)
            };
            let status = state.local_quota.consume(&principal.user_id, seed, mesh_core::ids::unix_now());
            tracing::info!(code = ?failure.code(), allowed = status.allowed, remaining = status.remaining,
                "quota service failed; metered locally");
            metrics::counter!("gateway_quota_local_total").increment(1);
            Metered { status, local: true }
        }
    }
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
