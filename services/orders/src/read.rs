//! Reading orders: one order for its owner, and an owner's orders newest first. An id the
//! gateway gave a queued order that did not become an order under that id answers what became
//! of it ([`QueueOutcome`]): rejected with its reason, or the order its key was bound to.

use mesh_core::ServiceError;
use mesh_core::page::PageRequest;
use mesh_core::store::decode;
use mesh_proto::orders::{GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order};

use crate::model::{self, QueueOutcome, StoredOrder};
use crate::request;
use crate::service::OrdersApi;

/// The one answer for "no such order" and "not yours", so the answer never tells whether an
/// order id exists.
const NOT_FOUND: &str = "order not found";

// === impl OrdersApi ===

impl OrdersApi {
    pub(crate) async fn get(&self, req: GetOrderRequest) -> Result<Order, ServiceError> {
        request::id("owner_id", &req.owner_id)?;
        request::id("id", &req.id)?;
        match self.store.get_json::<StoredOrder>(&model::order_key(&req.id)).await? {
            Some(order) if order.owner_id == req.owner_id => return Ok(order.to_proto()),
            Some(_) => return Err(ServiceError::not_found(NOT_FOUND)),
            None => {}
        }
        match self.store.get_json::<QueueOutcome>(&model::outcome_key(&req.id)).await? {
            Some(QueueOutcome::Rejected { owner_id, reason, items, idempotency_key })
                if owner_id == req.owner_id =>
            {
                Ok(model::rejected_order(&req.id, &owner_id, &items, &reason, &idempotency_key))
            }
            Some(QueueOutcome::Merged { owner_id, order_id }) if owner_id == req.owner_id => {
                match self.store.get_json::<StoredOrder>(&model::order_key(&order_id)).await? {
                    Some(order) if order.owner_id == req.owner_id => Ok(order.to_proto()),
                    _ => Err(ServiceError::not_found(NOT_FOUND)),
                }
            }
            _ => Err(ServiceError::not_found(NOT_FOUND)),
        }
    }

    pub(crate) async fn list(&self, req: ListOrdersRequest) -> Result<ListOrdersResponse, ServiceError> {
        request::id("owner_id", &req.owner_id)?;
        let page = PageRequest::parse(req.limit, &req.cursor)?;
        // One more than the page says whether there is a next page.
        let mut ids = self
            .store
            .index_page(&model::owner_index(&req.owner_id), page.after.as_deref(), page.limit + 1, true)
            .await?;
        let more = ids.len() > page.limit;
        ids.truncate(page.limit);
        let keys: Vec<String> = ids.iter().map(|id| model::order_key(id)).collect();
        let mut orders = Vec::with_capacity(ids.len());
        for (key, raw) in keys.iter().zip(self.store.get_many(&keys).await?) {
            // Indexing comes after storing, so an indexed order is there; skip one that is not
            // rather than fail the whole page.
            let Some(raw) = raw else { continue };
            let order: StoredOrder = decode(key, &raw)?;
            orders.push(order.to_proto());
        }
        let next_cursor = if more { ids.last().cloned().unwrap_or_default() } else { String::new() };
        Ok(ListOrdersResponse { orders, next_cursor })
    }
}
