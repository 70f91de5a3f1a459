//! Order status events: each order has a capped log in the store, `orders:events:{order_id}`,
//! of what became of it ("queued" by a gateway, "created", "rejected" by the queue consumer), and
//! `WatchOrder` replays it from a position and follows it.
//!
//! The log is capped in entries and bytes and expires a while after its last event
//! ([`EventsConfig`]): order logs are never read long after the order, and there is one per order.
//!
//! Every entry carries its owner, so a queued order (not stored yet) is watchable by its owner and
//! by no one else. Appending is best effort: an event the store refused is logged, never a failed
//! order. Fields: `owner_id`, `status`, `reason`, `at` (unix seconds); the gateway appends "queued"
//! in this format itself, and a test of the gateway reads what it wrote with [`event`].

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use mesh_core::store::{FollowOptions, LogBounds, Store, StreamEntry};
use mesh_core::{ServiceError, ids};
use mesh_proto::orders::{GetOrderRequest, OrderEvent, WatchOrderRequest};
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::service::OrdersApi;

/// What each order's log keeps (`[events]` of the config), and for how long.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Entries kept per order; the oldest go first. An order has a handful in its life (queued,
    /// created or rejected), so this only binds if something misbehaves. Default: 100.
    pub log_len: usize,
    /// Bytes kept per order (field names and values); the oldest go first. Default: 32 KiB
    /// (32768), about 200 entries with long reasons.
    pub log_max_bytes: usize,
    /// How long an order's log lives after its last event: a watcher opens it right after the
    /// order is placed; the order itself (`GetOrder`) outlives it. Default: 7d.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub log_ttl: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        let defaults = DEFAULT_BOUNDS;
        Self { log_len: defaults.max_len, log_max_bytes: defaults.max_bytes, log_ttl: defaults.ttl }
    }
}

impl EventsConfig {
    pub fn bounds(&self) -> LogBounds {
        LogBounds { max_len: self.log_len, max_bytes: self.log_max_bytes, ttl: self.log_ttl }
    }
}

/// The default bounds of an order's log. The business gateway appends "queued" with these (it
/// has no orders config; each append renews the TTL and trims with its own bounds, so the orders
/// service's configured ones hold from its first event on).
pub const DEFAULT_BOUNDS: LogBounds =
    LogBounds { max_len: 100, max_bytes: 32 * 1024, ttl: Duration::from_secs(7 * 24 * 3600) };
/// How an idle watcher polls.
const FOLLOW: FollowOptions = FollowOptions { poll_interval: Duration::from_millis(50), batch: 100 };

/// The store key of an order's event log.
pub fn log_key(order_id: &str) -> String {
    format!("orders:events:{order_id}")
}

/// Appends a status event to the log of `order_id`, best effort.
pub async fn publish(
    store: &Store,
    bounds: LogBounds,
    owner_id: &str,
    order_id: &str,
    status: &str,
    reason: &str,
) {
    let at = ids::unix_now().to_string();
    let fields = [("owner_id", owner_id), ("status", status), ("reason", reason), ("at", at.as_str())];
    if let Err(e) = store.log_append(&log_key(order_id), &fields, bounds).await {
        tracing::warn!(order = %order_id, status, error = %e, "could not record an order event");
    }
}

/// An entry of the log of `order_id` as the event `WatchOrder` answers.
pub fn event(order_id: &str, entry: StreamEntry) -> OrderEvent {
    let field = |name: &str| entry.field(name).unwrap_or_default().to_owned();
    OrderEvent {
        order_id: order_id.to_owned(),
        status: field("status"),
        reason: field("reason"),
        at: entry.field("at").and_then(|t| t.parse().ok()).unwrap_or_default(),
        id: entry.id,
    }
}

/// `<ms>-<seq>`, as the store hands out.
fn valid_position(id: &str) -> Result<&str, ServiceError> {
    if mesh_core::store::is_entry_id(id) {
        Ok(id)
    } else {
        Err(ServiceError::InvalidArgument("after_id: not an event id".into()))
    }
}

// === impl OrdersApi ===

impl OrdersApi {
    /// The events of the caller's order `id`; NOT_FOUND for anyone else's, as `GetOrder`.
    pub(crate) async fn watch(
        &self,
        req: WatchOrderRequest,
    ) -> Result<impl Stream<Item = Result<OrderEvent, Status>> + Send + 'static, ServiceError> {
        crate::request::id("owner_id", &req.owner_id)?;
        crate::request::id("id", &req.id)?;
        let after = match req.after_id.as_str() {
            "" => None,
            after => Some(valid_position(after)?.to_owned()),
        };
        let key = log_key(&req.id);
        let get = GetOrderRequest { owner_id: req.owner_id.clone(), id: req.id.clone() };
        // A stored (or rejected) order answers for itself; a queued one only through its log.
        if let Err(not_found) = self.get(get).await {
            let logged = self.store.log_after(&key, None, 1).await?;
            let owner = logged.first().and_then(|e| e.field("owner_id"));
            if owner != Some(req.owner_id.as_str()) {
                return Err(not_found);
            }
        }
        tracing::debug!(order = %req.id, after = ?after, "order watch started");
        let order_id = req.id;
        let entries = mesh_core::store::follow(self.store.clone(), key, after, FOLLOW, self.stop.signaled());
        Ok(entries.map(move |entry| match entry {
            Ok(entry) => Ok(event(&order_id, entry)),
            Err(e) => {
                tracing::warn!(order = %order_id, error = %e, "order events: cannot read the log");
                Err(Status::unavailable("order events are unavailable"))
            }
        }))
    }
}
