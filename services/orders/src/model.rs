//! Store keys of the orders service and the records kept under them.
//!
//! Owner and order ids in keys have passed [`mesh_core::ids::is_id`]; the Idempotency-Key is
//! printable ASCII and comes after the fixed-length owner id, so no key can be read two ways.
//!
//! | key                              | value                                        |
//! |----------------------------------|----------------------------------------------|
//! | `orders:idem:{owner}:{key}`      | [`Claim`] (JSON), expires after the key TTL  |
//! | `orders:order:{id}`              | [`StoredOrder`] (JSON)                       |
//! | `orders:by-owner:{owner}`        | the owner's order ids (ULIDs: time order)    |
//! | `orders:queued:{id}`             | [`QueueOutcome`] (JSON), expires after the key TTL |
//! | `orders:queue` (stream)          | orders the gateways queued, see [`crate::queue`]; never expires or trims (bounded by the gateways refusing) |
//! | `orders:events:{id}` (capped log) | the order's status events, see [`crate::events`]; capped in count and bytes, expires |
//!
//! Orders and their owner index are the business record and never expire; every other key does.

use mesh_proto::orders::{Order, OrderItem};
use serde::{Deserialize, Serialize};

/// Every order is created with this status; nothing moves it on yet.
pub(crate) const STATUS_CREATED: &str = "created";
/// What `GetOrder` answers for a queued order that could never be created.
pub(crate) const STATUS_REJECTED: &str = "rejected";

pub(crate) fn claim_key(owner_id: &str, idempotency_key: &str) -> String {
    format!("orders:idem:{owner_id}:{idempotency_key}")
}

pub(crate) fn order_key(id: &str) -> String {
    format!("orders:order:{id}")
}

pub(crate) fn owner_index(owner_id: &str) -> String {
    format!("orders:by-owner:{owner_id}")
}

pub(crate) fn outcome_key(order_id: &str) -> String {
    format!("orders:queued:{order_id}")
}

/// Seconds since the epoch at which the ULID `id` was made. Derived from the id so that every
/// attempt at creating one order (a resumed one too) gives it the same timestamp.
pub(crate) fn created_at(id: &str) -> i64 {
    id.parse::<ulid::Ulid>().map(|u| (u.timestamp_ms() / 1000) as i64).unwrap_or(0)
}

/// What an Idempotency-Key is bound to: the request it was first used with, and the id of the
/// order that request creates (fixed here, before any other step, so every attempt agrees on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claim {
    pub(crate) fingerprint: String,
    pub(crate) order_id: String,
}

/// What became of a queued order that did not create an order under its own id, kept under
/// `orders:queued:{id}` so `GetOrder` on that id answers something better than NOT_FOUND (which
/// the gateway would show as "queued" for as long as it remembers the order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub(crate) enum QueueOutcome {
    /// Refused for good (out of stock, unknown article, key used with other items): shown as an
    /// order with status "rejected" and the reason, so the client knows to send it again.
    Rejected { owner_id: String, reason: String, items: Vec<StoredItem>, idempotency_key: String },
    /// Its key was already bound to another order (created before the outage, or by a client
    /// that sent the key straight to this service): that order is the one this id stands for.
    Merged { owner_id: String, order_id: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredItem {
    pub(crate) article_id: String,
    pub(crate) quantity: u32,
    pub(crate) unit_price_cents: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOrder {
    pub(crate) id: String,
    pub(crate) owner_id: String,
    pub(crate) items: Vec<StoredItem>,
    pub(crate) status: String,
    pub(crate) total_cents: i64,
    pub(crate) created_at: i64,
    pub(crate) idempotency_key: String,
}

// === impl StoredOrder ===

impl StoredOrder {
    pub(crate) fn to_proto(&self) -> Order {
        Order {
            id: self.id.clone(),
            owner_id: self.owner_id.clone(),
            items: self
                .items
                .iter()
                .map(|i| OrderItem {
                    article_id: i.article_id.clone(),
                    quantity: i.quantity,
                    unit_price_cents: i.unit_price_cents,
                })
                .collect(),
            status: self.status.clone(),
            total_cents: self.total_cents,
            created_at: self.created_at,
            idempotency_key: self.idempotency_key.clone(),
            reason: String::new(),
        }
    }
}

/// A rejected queued order as `GetOrder` shows it: its lines without prices, a zero total.
pub(crate) fn rejected_order(
    id: &str,
    owner_id: &str,
    items: &[StoredItem],
    reason: &str,
    key: &str,
) -> Order {
    Order {
        id: id.to_owned(),
        owner_id: owner_id.to_owned(),
        items: items
            .iter()
            .map(|i| OrderItem {
                article_id: i.article_id.clone(),
                quantity: i.quantity,
                unit_price_cents: 0,
            })
            .collect(),
        status: STATUS_REJECTED.into(),
        created_at: created_at(id),
        idempotency_key: key.to_owned(),
        reason: reason.to_owned(),
        ..Order::default()
    }
}

/// Sum of quantity × unit price; `None` on overflow (impossible within the request bounds:
/// 50 lines × 1000 units × 10^9 cents is far below `i64::MAX`, but the check costs nothing).
pub(crate) fn total_cents(items: &[StoredItem]) -> Option<i64> {
    items
        .iter()
        .try_fold(0i64, |sum, i| sum.checked_add(i64::from(i.quantity).checked_mul(i.unit_price_cents)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(quantity: u32, unit_price_cents: i64) -> StoredItem {
        StoredItem { article_id: "a".into(), quantity, unit_price_cents }
    }

    #[test]
    fn the_total_is_quantity_times_unit_price() {
        assert_eq!(total_cents(&[]), Some(0));
        assert_eq!(total_cents(&[item(2, 150), item(1, 1000)]), Some(1300));
        assert_eq!(total_cents(&[item(2, i64::MAX)]), None);
    }

    #[test]
    fn created_at_comes_from_the_id() {
        let id = mesh_core::ids::new_id();
        assert!((created_at(&id) - mesh_core::ids::unix_now()).abs() <= 1);
    }
}
