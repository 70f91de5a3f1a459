//! Metering: every authenticated request counts against its principal's quota.

use axum::http::{HeaderName, HeaderValue};
use mesh_proto::quota::{ConsumeRequest, QuotaStatus};

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::state::AppState;

/// Counts one request. `None` when the quota service could not answer: the request is let
/// through (a metering outage must not become an API outage) and the failure logged.
pub async fn consume(state: &AppState, principal: &Principal, request_id: &RequestId) -> Option<QuotaStatus> {
    let request = ConsumeRequest { principal: principal.user_id.clone(), cost: 1 };
    match state
        .clients
        .quota
        .clone()
        .consume(grpc(request_id, state.clients.deadlines().quota, request))
        .await
    {
        Ok(response) => Some(response.into_inner()),
        Err(status) => {
            tracing::warn!(code = ?status.code(), "quota service failed; request not metered");
            metrics::counter!("gateway_quota_unmetered_total").increment(1);
            None
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
