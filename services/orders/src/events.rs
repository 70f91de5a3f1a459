//! Order status events: each order has a capped log in the store, `orders:events:{order_id}`,
//! of what became of it ("queued" by a gateway, "created", "rejected" by the queue consumer), and
//! `WatchOrder` replays it from a position and follows it.
//!
//! Every entry carries its owner, so a queued order (not stored yet) is watchable by its owner and
//! by no one else. Appending is best effort: an event the store refused is logged, never a failed
//! order. Fields: `owner_id`, `status`, `reason`, `at` (unix seconds); the gateway appends "queued"
//! in this format itself, and a test of the gateway reads what it wrote with [`event`].

use futures_util::{Stream, StreamExt};
use mesh_core::store::{FollowOptions, Store, StreamEntry};
use mesh_core::{ServiceError, ids};
use mesh_proto::orders::{GetOrderRequest, OrderEvent, WatchOrderRequest};
use tonic::Status;

use crate::service::OrdersApi;

/// Entries kept per order (about: the store trims whole nodes).
pub const LOG_LEN: usize = 100;
/// How an idle watcher polls.
const FOLLOW: FollowOptions =
    FollowOptions { poll_interval: std::time::Duration::from_millis(50), batch: 100 };

/// The store key of an order's event log.
pub fn log_key(order_id: &str) -> String {
    format!("orders:events:{order_id}")
}

/// Appends a status event to the log of `order_id`, best effort.
pub async fn publish(store: &Store, owner_id: &str, order_id: &str, status: &str, reason: &str) {
    let at = ids::unix_now().to_string();
    let fields = [("owner_id", owner_id), ("status", status), ("reason", reason), ("at", at.as_str())];
    if let Err(e) = store.log_append(&log_key(order_id), &fields, LOG_LEN).await {
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
