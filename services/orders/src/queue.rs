//! The order queue: orders a gateway accepted (202) while no orders replica answered, created
//! here once the service is back.
//!
//! The queue is the store stream [`STREAM`], shared by every orders replica through the consumer
//! group [`GROUP`]; each replica reads as its own consumer (`orders-<id>`, new per process). An
//! entry has the field [`FIELD_ORDER`] (a [`QueuedOrder`] as JSON) and [`FIELD_REQUEST_ID`] (the
//! request that queued it, for logs). The gateway writes exactly this; a test of the gateway
//! decodes what it writes with these types.
//!
//! Each entry goes through the same idempotent path as the `CreateOrder` RPC, with the owner, the
//! Idempotency-Key, the items and the order id the gateway gave the client, and is acknowledged
//! (which deletes it) only once that path has an answer for good:
//! - the order is stored (created now, or earlier by a retry of the client or a twin entry);
//! - or it can never be created as sent (unknown article, out of stock, key used with other
//!   items): the reason is kept under `orders:queued:{id}` (see [`crate::model::QueueOutcome`])
//!   before the ack, so `GetOrder` on that id answers `status: "rejected"` with the reason rather
//!   than NOT_FOUND, which the gateway would show as "queued" for as long as it remembers it.
//!
//! A transient failure (articles or the store down, the key busy) leaves the entry pending: this
//! replica tries it again every `retry_interval`, and if this replica dies, another one claims it
//! after `claim_idle`.
//!
//! # Exactly once per key
//! An entry may be processed more than once: the gateway may append one key twice (two replays
//! racing), a replica may die after creating the order but before acknowledging, a slow replica's
//! entry may be claimed by another, and the client may send the key again itself once orders is
//! back. Every one of those runs the create path with the same owner and key, and that path is
//! idempotent per key: the first run claims `orders:idem:{owner}:{key}` (binding the key to the
//! items and to the queued order id), every later run finds that claim and answers the order it
//! names, and stock is reserved under the order id, so articles takes it once. So any number of
//! deliveries of any number of entries for one key make one order, and acknowledging only after
//! the order is stored means no entry is dropped before its order exists: at-least-once delivery
//! plus an idempotent effect is exactly-once in effect.
//!
//! That holds while the key's claim lives, `idempotency_ttl` (24h by default) from its first
//! use: an entry still queued after that could make a second order, as a client retry after that
//! long would. So no entry may wait that long. The gateways bound the wait: they refuse to queue
//! (503) once the oldest entry has waited their `order_queue.max_age` (1h by default), so an entry
//! waits at most that plus the drain, and the queue never trims, so nothing accepted is lost on
//! the way. This consumer checks the other side: an entry older than a quarter of
//! `idempotency_ttl` is counted (`orders_queue_stale_entries_total`) and logged, since it means
//! the two settings disagree.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::shutdown::Drain;
use mesh_core::store::StreamEntry;
use mesh_core::{ServiceError, ids};
use mesh_proto::orders::{CreateOrderRequest, OrderItem};
use serde::{Deserialize, Serialize};

use crate::config::QueueConfig;
use crate::model::{self, QueueOutcome, StoredItem};
use crate::service::OrdersApi;

/// The stream the gateways append queued orders to (under the store's key prefix).
pub const STREAM: &str = "orders:queue";
/// The consumer group of every orders replica.
pub const GROUP: &str = "orders";
/// The field holding the [`QueuedOrder`] as JSON.
pub const FIELD_ORDER: &str = "order";
/// The field holding the id of the request that queued the order.
pub const FIELD_REQUEST_ID: &str = "request_id";

/// A create request a gateway could not deliver, as queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedOrder {
    pub owner_id: String,
    pub idempotency_key: String,
    /// The id the gateway answered the client with; the order is created under it.
    pub order_id: String,
    pub items: Vec<QueuedItem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedItem {
    pub article_id: String,
    pub quantity: u32,
}

/// What handling one entry came to; the `outcome` label of `orders_queue_processed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// This entry created its order.
    Created,
    /// Its order existed already (a retry of the client, a twin entry, a redelivery).
    Existing,
    /// Refused for good; the reason is recorded.
    Rejected,
    /// A twin of an entry already rejected: nothing to do.
    Duplicate,
    /// Not a queued order at all: logged whole and dropped.
    Malformed,
    /// A transient failure: left pending, tried again later.
    Retry,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Existing => "existing",
            Self::Rejected => "rejected",
            Self::Duplicate => "duplicate",
            Self::Malformed => "malformed",
            Self::Retry => "retry",
        }
    }
}

/// One replica's consumer of the queue.
pub(crate) struct Consumer {
    api: Arc<OrdersApi>,
    cfg: QueueConfig,
    /// This process's consumer name in the group.
    name: String,
    /// Whether the group is known to exist; false again after a read fails (Redis restarted
    /// empty, say), so the next round creates it again.
    group_ready: bool,
    next_claim: Instant,
    next_retry: Instant,
    /// Whether the last store call failed, so an outage is logged once, not every poll.
    store_down: bool,
}

// === impl Consumer ===

impl Consumer {
    pub(crate) fn new(api: Arc<OrdersApi>, cfg: QueueConfig) -> Self {
        let now = Instant::now();
        let name = format!("orders-{}", ids::new_id());
        Self { api, cfg, name, group_ready: false, next_claim: now, next_retry: now, store_down: false }
    }

    /// Drains the queue until `drain` is triggered; the entry in hand is finished first (it
    /// would be safe to drop it too: it stays pending and another replica claims it).
    pub(crate) async fn run(mut self, drain: Drain) {
        tracing::info!(consumer = %self.name, stream = STREAM, "order queue consumer started");
        let signaled = drain.signaled();
        tokio::pin!(signaled);
        while !drain.is_draining() {
            let pause = self.round(&drain).await;
            if pause.is_zero() {
                continue;
            }
            tokio::select! {
                () = &mut signaled => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(consumer = %self.name, "order queue consumer stopped");
    }

    /// One round: claim entries of dead consumers when due, retry our own when due, read new
    /// ones. Returns how long to wait before the next round (zero: more is waiting).
    async fn round(&mut self, drain: &Drain) -> Duration {
        let store = self.api.store.clone();
        let batch = self.cfg.batch_size;
        if !self.group_ready {
            match store.stream_create_group(STREAM, GROUP).await {
                Ok(()) => self.group_ready = true,
                Err(e) => return self.store_failed(&e),
            }
        }
        let now = Instant::now();
        if now >= self.next_claim {
            self.next_claim = now + self.cfg.claim_idle / 2;
            match store.stream_claim(STREAM, GROUP, &self.name, self.cfg.claim_idle, batch).await {
                Ok(entries) => {
                    if !entries.is_empty() {
                        let claimed = entries.len();
                        tracing::info!(consumer = %self.name, claimed, "took over stale queued orders");
                    }
                    self.handle_all(entries, drain).await;
                }
                Err(e) => return self.store_failed(&e),
            }
        }
        if Instant::now() >= self.next_retry {
            self.next_retry = Instant::now() + self.cfg.retry_interval;
            match store.stream_read_pending(STREAM, GROUP, &self.name, batch).await {
                Ok(entries) => self.handle_all(entries, drain).await,
                Err(e) => return self.store_failed(&e),
            }
        }
        match store.stream_read(STREAM, GROUP, &self.name, batch).await {
            Ok(entries) => {
                self.store_ok();
                let full = entries.len() == batch;
                self.handle_all(entries, drain).await;
                if full { Duration::ZERO } else { self.cfg.poll_interval }
            }
            Err(e) => self.store_failed(&e),
        }
    }

    fn store_failed(&mut self, e: &mesh_core::StoreError) -> Duration {
        if !self.store_down {
            tracing::warn!(consumer = %self.name, error = %e, "order queue unreachable; will retry");
        }
        self.store_down = true;
        self.group_ready = false;
        self.cfg.retry_interval.max(self.cfg.poll_interval)
    }

    fn store_ok(&mut self) {
        if self.store_down {
            tracing::info!(consumer = %self.name, "order queue reachable again");
        }
        self.store_down = false;
    }

    async fn handle_all(&mut self, entries: Vec<StreamEntry>, drain: &Drain) {
        for entry in entries {
            if drain.is_draining() {
                return;
            }
            let outcome = self.handle(&entry).await;
            metrics::counter!("orders_queue_processed_total", "outcome" => outcome.as_str()).increment(1);
            if outcome == Outcome::Retry {
                continue;
            }
            if let Err(e) = self.api.store.stream_ack(STREAM, GROUP, std::slice::from_ref(&entry.id)).await {
                // Still pending: it comes back and finds its order (or its rejection) done.
                tracing::warn!(entry = %entry.id, error = %e, "could not acknowledge a queued order");
            }
        }
    }

    /// Everything but the acknowledgement.
    async fn handle(&self, entry: &StreamEntry) -> Outcome {
        let request_id = entry.field(FIELD_REQUEST_ID).unwrap_or("");
        let Some(queued) =
            entry.field(FIELD_ORDER).and_then(|raw| serde_json::from_str::<QueuedOrder>(raw).ok())
        else {
            tracing::error!(entry = %entry.id, fields = ?entry.fields, "dropping a malformed queue entry");
            return Outcome::Malformed;
        };
        self.check_age(entry, request_id);
        let store = &self.api.store;
        let outcome_key = model::outcome_key(&queued.order_id);
        if ids::is_id(&queued.order_id) {
            match store.get_json::<QueueOutcome>(&outcome_key).await {
                Ok(Some(QueueOutcome::Rejected { .. })) => return Outcome::Duplicate,
                Ok(_) => {}
                Err(_) => return Outcome::Retry,
            }
        }
        let request = CreateOrderRequest {
            owner_id: queued.owner_id.clone(),
            idempotency_key: queued.idempotency_key.clone(),
            items: queued
                .items
                .iter()
                .map(|i| OrderItem {
                    article_id: i.article_id.clone(),
                    quantity: i.quantity,
                    unit_price_cents: 0,
                })
                .collect(),
            order_id: queued.order_id.clone(),
        };
        let (order, created) = match self.api.create_or_find(request).await {
            Ok(done) => done,
            Err(ServiceError::Unavailable(_) | ServiceError::Aborted(_)) => return Outcome::Retry,
            Err(e) => return self.reject(&queued, request_id, e).await,
        };
        if order.id != queued.order_id {
            // The key was bound to another order before it was queued: point this id at it.
            let merged =
                QueueOutcome::Merged { owner_id: queued.owner_id.clone(), order_id: order.id.clone() };
            if store.set_json(&outcome_key, &merged, Some(self.api.cfg.idempotency_ttl)).await.is_err() {
                return Outcome::Retry;
            }
        }
        tracing::info!(
            request_id, order = %order.id, owner = %queued.owner_id, created,
            "queued order processed"
        );
        if created { Outcome::Created } else { Outcome::Existing }
    }

    /// Warns about an entry that waited long enough to endanger exactly-once (see the module doc).
    fn check_age(&self, entry: &StreamEntry, request_id: &str) {
        let appended_ms = entry.id.split_once('-').and_then(|(ms, _)| ms.parse::<u64>().ok());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let waited = Duration::from_millis(now_ms.saturating_sub(appended_ms.unwrap_or(now_ms)));
        if waited > self.api.cfg.idempotency_ttl / 4 {
            metrics::counter!("orders_queue_stale_entries_total").increment(1);
            tracing::warn!(
                entry = %entry.id, request_id, ?waited, idempotency_ttl = ?self.api.cfg.idempotency_ttl,
                "a queued order waited over a quarter of the Idempotency-Key lifetime: \
                 the gateways' order_queue.max_age is too long for it"
            );
        }
    }

    /// Records why the order can never be created, then lets it be acknowledged.
    async fn reject(&self, queued: &QueuedOrder, request_id: &str, e: ServiceError) -> Outcome {
        let reason = match &e {
            ServiceError::Internal(cause) => {
                tracing::error!(request_id, order = %queued.order_id, %cause, "queued order failed");
                "the order could not be processed".to_owned()
            }
            other => other.to_string(),
        };
        let (order, owner) = (&queued.order_id, &queued.owner_id);
        tracing::info!(request_id, %order, %owner, %reason, "queued order rejected");
        if !ids::is_id(&queued.order_id) || !ids::is_id(&queued.owner_id) {
            // Nowhere to record it that anyone could read; the log line above is all there is.
            return Outcome::Rejected;
        }
        let rejected = QueueOutcome::Rejected {
            owner_id: queued.owner_id.clone(),
            reason: reason.clone(),
            items: queued
                .items
                .iter()
                .map(|i| StoredItem {
                    article_id: i.article_id.clone(),
                    quantity: i.quantity,
                    unit_price_cents: 0,
                })
                .collect(),
            idempotency_key: queued.idempotency_key.clone(),
        };
        let key = model::outcome_key(&queued.order_id);
        match self.api.store.set_json(&key, &rejected, Some(self.api.cfg.idempotency_ttl)).await {
            Ok(()) => {
                let status = model::STATUS_REJECTED;
                let bounds = self.api.cfg.events.bounds();
                crate::events::publish(
                    &self.api.store,
                    bounds,
                    &queued.owner_id,
                    &queued.order_id,
                    status,
                    &reason,
                )
                .await;
                Outcome::Rejected
            }
            Err(_) => Outcome::Retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_order_is_plain_json() {
        let queued = QueuedOrder {
            owner_id: "O".into(),
            idempotency_key: "k".into(),
            order_id: "I".into(),
            items: vec![QueuedItem { article_id: "A".into(), quantity: 2 }],
        };
        let json = serde_json::to_value(&queued).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"owner_id": "O", "idempotency_key": "k", "order_id": "I",
                "items": [{"article_id": "A", "quantity": 2}]})
        );
    }
}
