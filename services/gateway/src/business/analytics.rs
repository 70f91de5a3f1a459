//! `/v1/analytics`.
//!
//! Summaries are private: each is remembered under its owner and window, and when the analytics
//! service is out the owner's own last summary for that window answers, marked degraded.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mesh_proto::analytics as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::authn::Principal;
use crate::error::ApiError;
use crate::fallback::{self, Fallback};
use crate::json::{ValidJson, ValidQuery};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBody {
    /// Lowercase name such as `page.view`.
    #[serde(rename = "type")]
    pub kind: String,
    /// At most 32, keys up to 64 characters, values up to 512, and 4096 bytes as JSON in all
    /// (the analytics service's `max_properties_bytes`).
    #[serde(default)]
    pub properties: HashMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recorded {
    pub id: String,
    pub recorded_at: i64,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// `5m`, `15m`, `1h` (default), `6h`, `24h` or `7d`.
    pub window: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TypeCount {
    #[serde(rename = "type")]
    pub kind: String,
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub window: String,
    pub total: u64,
    pub by_type: Vec<TypeCount>,
    pub from: i64,
    pub to: i64,
}

impl From<pb::Summary> for Summary {
    fn from(s: pb::Summary) -> Self {
        Self {
            window: s.window,
            total: s.total,
            by_type: s.by_type.into_iter().map(|t| TypeCount { kind: t.r#type, count: t.count }).collect(),
            from: s.from,
            to: s.to,
        }
    }
}

#[utoipa::path(post, path = "/v1/analytics/events", tag = "analytics", request_body = EventBody,
    responses((status = 202, body = Recorded),
        (status = 413, description = "the properties are longer, as JSON, than the analytics service keeps (4096 bytes by default)")))]
pub async fn record_event(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidJson(body): ValidJson<EventBody>,
) -> Result<impl IntoResponse, ApiError> {
    let request = pb::RecordEventRequest {
        owner_id: principal.user_id,
        r#type: body.kind,
        properties: body.properties,
    };
    let recorded = state.analytics.record_event(request).await.map_err(|e| refused_event(&e.status))?;
    Ok((StatusCode::ACCEPTED, Json(Recorded { id: recorded.id, recorded_at: recorded.recorded_at })))
}

/// Why the analytics service refused an event, for the client. OUT_OF_RANGE is its answer to
/// properties larger than it keeps (`max_properties_bytes`): the body is well formed but too
/// large, so 413, with the service's message, which names the limit. Everything else takes the
/// one table.
fn refused_event(status: &tonic::Status) -> ApiError {
    if status.code() == tonic::Code::OutOfRange {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "properties-too-large",
            "Event properties too large",
            status.message(),
        );
    }
    ApiError::from_status("analytics", status)
}

/// The last-known-good key of an owner's summary over `window` (as asked; empty is the default).
pub fn summary_key(owner: &str, window: &str) -> String {
    format!("analytics:summary:{owner}:{}", fallback::digest(window))
}

#[utoipa::path(get, path = "/v1/analytics/summary", tag = "analytics", params(SummaryParams),
    responses((status = 200, body = Summary, description = "`x-mesh-fallback: degraded` and `\"degraded\": true` when the analytics service is out"),
        (status = 503, description = "the analytics service is out and no summary of yours is remembered")))]
pub async fn summary(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidQuery(params): ValidQuery<SummaryParams>,
) -> Result<Response, ApiError> {
    let window = params.window.unwrap_or_default();
    let key = summary_key(&principal.user_id, &window);
    let request = pb::GetSummaryRequest { owner_id: principal.user_id, window };
    match state.analytics.get_summary(request).await {
        Ok(summary) => Ok(fallback::live(&state.lkg, &key, &Summary::from(summary)).await),
        Err(e) => fallback::after_failure(&state.lkg, &key, Fallback::Degraded, e.service, &e.status).await,
    }
}
