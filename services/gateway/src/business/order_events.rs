//! `GET /v1/orders/{id}/events`: the status events of one of the caller's orders as server-sent
//! events ("queued", "created", "rejected"), from the first one kept, or after `Last-Event-ID`.
//!
//! The gRPC `WatchOrder` stream goes through the same slots, buffer and stall limit as
//! `/v1/analytics/live` ([`super::live::sse`]). Another user's order, or none, is 404.

use axum::extract::{Extension, Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event;
use mesh_proto::orders as pb;
use serde::Serialize;

use super::live::{last_event_id, sse};
use crate::authn::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The `data:` of one event.
#[derive(Debug, Serialize)]
struct EventData {
    order_id: String,
    status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    reason: String,
    at: i64,
}

fn sse_event(event: pb::OrderEvent) -> Event {
    // Statuses are the service's own words; a line break would break the framing, so never pass one.
    let name = if event.status.contains(['\n', '\r']) { "message".to_owned() } else { event.status.clone() };
    let data =
        EventData { order_id: event.order_id, status: event.status, reason: event.reason, at: event.at };
    let data = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
    Event::default().id(event.id).event(name).data(data)
}

#[utoipa::path(get, path = "/v1/orders/{id}/events", tag = "orders", params(("id" = String, Path, description = "order id"),
        ("last-event-id" = Option<String>, Header, description = "resume after this event")),
    responses((status = 200, content_type = "text/event-stream",
            description = "the order's status events: `id:` position, `event:` status, `data:` JSON {order_id, status, reason?, at}"),
        (status = 404, description = "no such order of yours"),
        (status = 429, description = "you hold the most streams allowed at once"),
        (status = 503, description = "the gateway holds the most streams it allows, or the orders service is out")))]
pub async fn order_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let after_id = last_event_id(&headers)?;
    let slot = state.streams.acquire(&principal.user_id).await?;
    let request = pb::WatchOrderRequest { owner_id: principal.user_id, id, after_id };
    // The deadline covers the call until its headers: the stream itself runs until someone ends it.
    let upstream = state.orders.watch_order(request).await?;
    Ok(sse(&state.cfg.streams, upstream, slot, sse_event))
}
