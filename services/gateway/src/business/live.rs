//! `GET /v1/analytics/live`: the caller's own analytics events as server-sent events; and the
//! SSE machinery every event stream route shares ([`sse`]).
//!
//! The gRPC `WatchEvents` stream is pumped by a task of its own into a bounded channel, and the
//! SSE body reads that channel. A client that stops reading fills the channel; the pump then waits
//! at most `streams.stall_timeout` and gives up, which cancels the upstream stream and frees the
//! slot. So a stream never holds more than `streams.buffer` events here, whoever is on the other
//! end. When the client goes away the body is dropped, the pump sees the channel closed and drops
//! the upstream stream, which cancels the watch on the analytics service.
//!
//! Each event carries `id:` (its position, for `Last-Event-ID`), `event:` (its type) and `data:`
//! (JSON). Tower's timeout of the edge stack times the handler, not the body, so a stream outlives
//! `limits.request_timeout`; compression leaves `text/event-stream` alone (tower-http's default
//! predicate), so nothing sits in a compressor's buffer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use mesh_proto::analytics as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::authn::Principal;
use crate::error::ApiError;
use crate::json::ValidQuery;
use crate::state::AppState;
use crate::streams::{StreamConfig, StreamSlot};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LiveParams {
    /// Only events of this type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The `data:` of one event.
#[derive(Debug, Serialize)]
struct EventData {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    properties: HashMap<String, String>,
    recorded_at: i64,
}

/// An event waiting in a stream's buffer, counted in `gateway_stream_buffered_events` until it is
/// sent or dropped.
struct Buffered(Option<Event>);

/// `<ms>-<seq>`: a position the service hands out (a store log id); anything else is refused here.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers.get("last-event-id") else { return Ok(String::new()) };
    let refused = || ApiError::bad_request("Last-Event-ID is not an event id this stream sent");
    let id = value.to_str().map_err(|_| refused())?.trim();
    match id {
        "" => Ok(String::new()),
        id if mesh_core::store::is_entry_id(id) => Ok(id.to_owned()),
        _ => Err(refused()),
    }
}

fn sse_event(event: pb::Event) -> Event {
    // Types are validated lowercase names; a line break would break the framing, so never pass one.
    let kind = if event.r#type.contains(['\n', '\r']) { "message".to_owned() } else { event.r#type.clone() };
    let data = EventData {
        id: event.event_id,
        kind: event.r#type,
        properties: event.properties,
        recorded_at: event.recorded_at,
    };
    let data = serde_json::to_string(&data).unwrap_or_else(|_| "{}".into());
    Event::default().id(event.id).event(kind).data(data)
}

#[utoipa::path(get, path = "/v1/analytics/live", tag = "analytics", params(LiveParams,
        ("last-event-id" = Option<String>, Header, description = "resume after this event")),
    responses((status = 200, content_type = "text/event-stream",
            description = "your events as they are recorded: `id:` position, `event:` type, `data:` JSON {id, type, properties, recorded_at}"),
        (status = 429, description = "you hold the most streams allowed at once"),
        (status = 503, description = "the gateway holds the most streams it allows, or the analytics service is out")))]
pub async fn live(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ValidQuery(params): ValidQuery<LiveParams>,
) -> Result<Response, ApiError> {
    let after_id = last_event_id(&headers)?;
    // The type is checked by analytics (validate::event_type): a bad one is its 400.
    let kind = params.kind.unwrap_or_default();
    let slot = state.streams.acquire(&principal.user_id).await?;
    let request = pb::WatchEventsRequest { owner_id: principal.user_id, r#type: kind, after_id };
    // The deadline covers the call until its headers: the stream itself runs until someone ends it.
    let upstream = state.analytics.watch_events(request).await?;
    Ok(sse(&state.cfg.streams, upstream, slot, sse_event))
}

/// The SSE answer of an upstream gRPC stream: a pump task moves its messages, as `to_event` makes
/// them, into a buffer of `cfg.buffer` events that the body reads. Shared by every SSE route.
pub(crate) fn sse<T: Send + 'static>(
    cfg: &StreamConfig,
    upstream: tonic::Streaming<T>,
    slot: StreamSlot,
    to_event: fn(T) -> Event,
) -> Response {
    let (tx, rx) = mpsc::channel(cfg.buffer.max(1));
    let deadline = tokio::time::Instant::now() + cfg.max_duration;
    tokio::spawn(pump(upstream, tx, slot, cfg.stall_timeout, deadline, to_event));
    let keep_alive = KeepAlive::new().interval(cfg.keep_alive);
    Sse::new(body(rx)).keep_alive(keep_alive).into_response()
}

fn body(rx: mpsc::Receiver<Buffered>) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move {
        let mut buffered = rx.recv().await?;
        let event = buffered.0.take()?;
        Some((Ok(event), rx))
    })
}

/// Moves events from upstream to the client's buffer until either side is done, or the client
/// has let the buffer stay full for `stall`, or `deadline` (`streams.max_duration`) passes.
async fn pump<T>(
    mut upstream: tonic::Streaming<T>,
    tx: mpsc::Sender<Buffered>,
    slot: StreamSlot,
    stall: Duration,
    deadline: tokio::time::Instant,
    to_event: fn(T) -> Event,
) {
    let ended = loop {
        let message = tokio::select! {
            () = tx.closed() => break "client_gone",
            () = slot.closing() => break "shutdown",
            () = tokio::time::sleep_until(deadline) => break "max_duration",
            message = upstream.message() => message,
        };
        let event = match message {
            Ok(Some(event)) => event,
            Ok(None) => break "upstream_ended",
            Err(status) => {
                tracing::warn!(status = %status, "event stream: upstream stream failed");
                break "upstream_failed";
            }
        };
        match tokio::time::timeout(stall, tx.reserve()).await {
            Ok(Ok(permit)) => permit.send(Buffered::new(to_event(event))),
            Ok(Err(_)) => break "client_gone",
            Err(_) => break "client_too_slow",
        }
    };
    metrics::counter!("gateway_streams_ended_total", "reason" => ended).increment(1);
    tracing::debug!(reason = ended, "event stream ended");
    // Upstream first: cancelling the watch is what frees the service; the slot goes with it.
    drop(upstream);
    drop(slot);
}

// === impl Buffered ===

impl Buffered {
    fn new(event: Event) -> Self {
        metrics::gauge!("gateway_stream_buffered_events").increment(1.0);
        Self(Some(event))
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        metrics::gauge!("gateway_stream_buffered_events").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_event_ids_resume() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), "");
        headers.insert("last-event-id", HeaderValue::from_static("1700000000000-3"));
        assert_eq!(last_event_id(&headers).unwrap(), "1700000000000-3");
        for bad in ["+", "1-x", "-1", "1700000000000", "1-2-3"] {
            headers.insert("last-event-id", HeaderValue::from_static(bad));
            assert!(last_event_id(&headers).is_err(), "{bad}");
        }
    }
}
