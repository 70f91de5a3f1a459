//! Store keys of the articles service and the records kept under them.
//!
//! Every id in a key has passed [`mesh_core::ids::is_id`], so no caller can reach another key.
//!
//! | key                             | value                                    |
//! |---------------------------------|------------------------------------------|
//! | `articles:item:{id}`            | [`StoredArticle`] (JSON)                 |
//! | `articles:stock:{id}`           | units in stock (integer, `add_bounded`)  |
//! | `articles:index`                | every article id, ordered (oldest first) |
//! | `articles:reservation:{id}`     | [`Reservation`] (JSON)                   |

use mesh_proto::articles::{Article, ReservedLine};
use serde::{Deserialize, Serialize};

/// The ordered index of every article id; ids are ULIDs, so byte order is creation order.
pub(crate) const INDEX: &str = "articles:index";

pub(crate) fn article_key(id: &str) -> String {
    format!("articles:item:{id}")
}

pub(crate) fn stock_key(id: &str) -> String {
    format!("articles:stock:{id}")
}

pub(crate) fn reservation_key(id: &str) -> String {
    format!("articles:reservation:{id}")
}

/// Seconds since the epoch at which the ULID `id` was made; ids carry their creation time, so
/// every replica derives the same timestamp from the id alone.
pub(crate) fn created_at(id: &str) -> i64 {
    id.parse::<ulid::Ulid>().map(|u| (u.timestamp_ms() / 1000) as i64).unwrap_or(0)
}

/// An article as stored. Its stock is not here: it lives under its own key so it can change
/// atomically without rewriting the record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredArticle {
    pub(crate) id: String,
    pub(crate) title: String,
    pub(crate) body: String,
    pub(crate) price_cents: i64,
    pub(crate) created_at: i64,
}

/// Where a reservation is in its life. It only moves forward:
/// `pending → reserved → released`, or `pending →` (deleted) when it could not take its stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReservationState {
    /// Claimed by a call that is taking stock right now.
    Pending,
    /// Holds the stock of its lines.
    Reserved,
    /// Gave its stock back.
    Released,
}

/// One line of a reservation, with the price of one unit when it was reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Line {
    pub(crate) article_id: String,
    pub(crate) quantity: u32,
    pub(crate) unit_price_cents: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub(crate) state: ReservationState,
    pub(crate) lines: Vec<Line>,
    /// Set on a `pending` claim only: which call made it. Two calls may claim one id with the same
    /// lines, one after the other's claim expired; this is what tells their claims apart, so a
    /// call that failed frees its own claim and never the next one's (`delete_if_eq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) attempt: Option<String>,
}

// === impl StoredArticle ===

impl StoredArticle {
    pub(crate) fn to_proto(&self, stock: i64) -> Article {
        Article {
            id: self.id.clone(),
            title: self.title.clone(),
            body: self.body.clone(),
            price_cents: self.price_cents,
            stock,
            created_at: self.created_at,
        }
    }
}

// === impl Line ===

impl Line {
    /// The stock this line takes, as the signed amount `add_bounded` subtracts.
    pub(crate) fn units(&self) -> i64 {
        i64::from(self.quantity)
    }

    pub(crate) fn to_proto(&self) -> ReservedLine {
        ReservedLine {
            article_id: self.article_id.clone(),
            quantity: self.quantity,
            unit_price_cents: self.unit_price_cents,
        }
    }
}

// === impl Reservation ===

impl Reservation {
    pub(crate) fn new(state: ReservationState, lines: Vec<Line>) -> Self {
        Self { state, lines, attempt: None }
    }

    /// The claim of one call that is about to take the stock of `lines`; see [`Reservation::attempt`].
    pub(crate) fn pending(lines: Vec<Line>) -> Self {
        Self { attempt: Some(mesh_core::ids::new_id()), ..Self::new(ReservationState::Pending, lines) }
    }

    pub(crate) fn encode(&self) -> Result<String, mesh_core::ServiceError> {
        serde_json::to_string(self).map_err(mesh_core::ServiceError::internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_at_comes_from_the_id() {
        let id = mesh_core::ids::new_id();
        let now = mesh_core::ids::unix_now();
        assert!((created_at(&id) - now).abs() <= 1, "{} vs {now}", created_at(&id));
        assert_eq!(created_at("not-an-id"), 0);
    }

    #[test]
    fn reservation_state_is_stored_as_a_word() {
        let r = Reservation::new(ReservationState::Pending, Vec::new());
        assert_eq!(r.encode().unwrap(), r#"{"state":"pending","lines":[]}"#);
    }

    #[test]
    fn pending_claims_of_two_calls_differ_and_old_records_still_decode() {
        let a = Reservation::pending(Vec::new());
        let b = Reservation::pending(Vec::new());
        assert_ne!(a.encode().unwrap(), b.encode().unwrap());
        let old: Reservation = serde_json::from_str(r#"{"state":"reserved","lines":[]}"#).unwrap();
        assert_eq!(old, Reservation::new(ReservationState::Reserved, Vec::new()));
    }
}
