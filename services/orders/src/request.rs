//! Checks on a create request, and its fingerprint: what an Idempotency-Key is bound to.

use mesh_core::ServiceError;
use mesh_proto::orders::CreateOrderRequest;
use sha2::{Digest, Sha256};

use mesh_core::contracts;

/// One line of an order as asked for. The price is not the caller's to say: it comes from the
/// articles service when stock is reserved, so a request's `unit_price_cents` is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) article_id: String,
    pub(crate) quantity: u32,
}

/// A checked create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewOrder {
    pub(crate) owner_id: String,
    pub(crate) idempotency_key: String,
    pub(crate) items: Vec<Item>,
    /// The id to give the order if the key is new (a queued order keeps the id its client was
    /// given); `None`: a fresh one.
    pub(crate) order_id: Option<String>,
}

/// An id in `field`: the one check every service uses.
pub(crate) use mesh_core::ids::check as id;

// === impl NewOrder ===

impl NewOrder {
    /// Checks every field. An article appearing twice is refused, not merged (the articles
    /// service refuses it too): the order's lines then mirror the request's one to one.
    pub(crate) fn parse(req: CreateOrderRequest) -> Result<Self, ServiceError> {
        id("owner_id", &req.owner_id)?;
        contracts::check_idempotency_key("idempotency_key", &req.idempotency_key)
            .map_err(ServiceError::invalid)?;
        if !req.order_id.is_empty() {
            id("order_id", &req.order_id)?;
        }
        let lines = req.items.iter().map(|item| (item.article_id.as_str(), item.quantity));
        contracts::check_order_lines("items", lines).map_err(ServiceError::invalid)?;
        let items = req
            .items
            .into_iter()
            .map(|item| Item { article_id: item.article_id, quantity: item.quantity })
            .collect();
        let order_id = Some(req.order_id).filter(|id| !id.is_empty());
        Ok(Self { owner_id: req.owner_id, idempotency_key: req.idempotency_key, items, order_id })
    }

    /// SHA-256 (hex) over the items in a canonical form: sorted by article id, one
    /// `<article_id> <quantity>\n` per item. The order items are listed in does not change what
    /// is ordered, so it does not change the fingerprint; ids are fixed-length base32 and
    /// quantities decimal, so no two different item sets share a canonical form.
    pub(crate) fn fingerprint(&self) -> String {
        let mut items: Vec<&Item> = self.items.iter().collect();
        items.sort_by(|a, b| a.article_id.cmp(&b.article_id));
        let mut hasher = Sha256::new();
        for item in items {
            hasher.update(format!("{} {}\n", item.article_id, item.quantity));
        }
        hex::encode(hasher.finalize())
    }
}

#[cfg(test)]
mod tests {
    use mesh_proto::orders::OrderItem;

    use super::*;
    use mesh_core::ids;

    fn item(article_id: &str, quantity: u32) -> OrderItem {
        OrderItem { article_id: article_id.into(), quantity, unit_price_cents: 0 }
    }

    fn request(items: Vec<OrderItem>) -> CreateOrderRequest {
        CreateOrderRequest {
            owner_id: ids::new_id(),
            idempotency_key: "key-1".into(),
            items,
            order_id: String::new(),
        }
    }

    fn fingerprint(items: Vec<OrderItem>) -> String {
        NewOrder::parse(request(items)).unwrap().fingerprint()
    }

    #[test]
    fn the_fingerprint_ignores_item_order_and_prices_but_not_quantities() {
        let (a, b) = (ids::new_id(), ids::new_id());
        let base = fingerprint(vec![item(&a, 1), item(&b, 2)]);
        assert_eq!(base.len(), 64);
        assert_eq!(base, fingerprint(vec![item(&b, 2), item(&a, 1)]));
        let mut priced = item(&a, 1);
        priced.unit_price_cents = 5;
        assert_eq!(base, fingerprint(vec![priced, item(&b, 2)]));
        assert_ne!(base, fingerprint(vec![item(&a, 2), item(&b, 1)]));
        assert_ne!(base, fingerprint(vec![item(&a, 1)]));
    }

    #[test]
    fn each_bad_field_is_named() {
        let a = ids::new_id();
        let field = |req: CreateOrderRequest| {
            NewOrder::parse(req).unwrap_err().to_string().split(':').next().unwrap_or_default().to_owned()
        };
        let good = || request(vec![item(&a, 1)]);
        assert!(NewOrder::parse(good()).is_ok());
        assert!(NewOrder::parse(CreateOrderRequest { idempotency_key: "a-b~!".into(), ..good() }).is_ok());
        // One rule with the gateway's, the stricter: no spaces.
        assert_eq!(field(CreateOrderRequest { idempotency_key: "a b".into(), ..good() }), "idempotency_key");
        assert_eq!(field(CreateOrderRequest { owner_id: "me".into(), ..good() }), "owner_id");
        assert_eq!(field(CreateOrderRequest { idempotency_key: String::new(), ..good() }), "idempotency_key");
        assert_eq!(
            field(CreateOrderRequest { idempotency_key: "k".repeat(129), ..good() }),
            "idempotency_key"
        );
        assert_eq!(
            field(CreateOrderRequest { idempotency_key: "tab\t".into(), ..good() }),
            "idempotency_key"
        );
        assert_eq!(field(CreateOrderRequest { idempotency_key: "clé".into(), ..good() }), "idempotency_key");
        assert_eq!(field(CreateOrderRequest { order_id: "not-an-id".into(), ..good() }), "order_id");
        let chosen = ids::new_id();
        let parsed = NewOrder::parse(CreateOrderRequest { order_id: chosen.clone(), ..good() }).unwrap();
        assert_eq!(parsed.order_id, Some(chosen));
        assert_eq!(NewOrder::parse(good()).unwrap().order_id, None);
        assert_eq!(field(request(vec![])), "items");
        assert_eq!(field(request(vec![item(&a, 1); 51])), "items");
        assert_eq!(field(request(vec![item(&a, 0)])), "items[0].quantity");
        assert_eq!(field(request(vec![item(&a, 1001)])), "items[0].quantity");
        assert_eq!(field(request(vec![item(&a, 1), item("x", 1)])), "items[1].article_id");
        assert!(NewOrder::parse(request(vec![item(&a, 1), item(&a, 1)])).is_ok(), "an article on two lines");
    }
}
