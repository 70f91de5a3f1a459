//! Idempotent order creation.
//!
//! Steps, each safe to repeat, so a request that stopped half way is finished by sending it again
//! with the same Idempotency-Key, on any replica:
//! 1. claim `orders:idem:{owner}:{key}` with `set_nx` → {fingerprint, order id}; the order id is
//!    the request's `order_id` when it names one (a queued order keeps the id its client was
//!    given), else a new one. A claim already
//!    there with another fingerprint refuses the request; with the same one, this request
//!    continues the order it names. A request that can never succeed as sent frees the claim it
//!    found or made, and only that one (`delete_if_eq`);
//! 2. if that order is stored, answer it (if it is this owner's and key's: a supplied `order_id`
//!    naming someone else's order is refused);
//! 3. reserve stock on articles with the order id as reservation id (articles answers a repeat
//!    with the same lines and takes nothing twice);
//! 4. store the order under its id with `set_nx`: of concurrent attempts exactly one writes, and
//!    the others answer what it wrote;
//! 5. index it under its owner (a set: adding twice is adding once).

use mesh_core::store::decode;
use mesh_core::{ServiceError, ids};
use mesh_proto::orders::{CreateOrderRequest, Order};

use crate::model::{self, Claim, StoredItem, StoredOrder};
use crate::request::NewOrder;
use crate::service::OrdersApi;

/// Times a claim is attempted when it disappears between `set_nx` and the read of it (a failed
/// attempt freeing the key at that moment). Once is the usual case; more means a storm of retries.
const CLAIM_ATTEMPTS: usize = 3;

// === impl OrdersApi ===

impl OrdersApi {
    pub(crate) async fn create(&self, req: CreateOrderRequest) -> Result<Order, ServiceError> {
        Ok(self.create_or_find(req).await?.0)
    }

    /// [`OrdersApi::create`], also telling whether this call stored the order (`false`: an earlier
    /// call with the same key did).
    pub(crate) async fn create_or_find(
        &self,
        req: CreateOrderRequest,
    ) -> Result<(Order, bool), ServiceError> {
        let req = NewOrder::parse(req)?;
        let claim_key = model::claim_key(&req.owner_id, &req.idempotency_key);
        let order_id = req.order_id.clone().unwrap_or_else(ids::new_id);
        let (claim, claimed) = self.claim(&claim_key, req.fingerprint(), order_id).await?;
        let order_key = model::order_key(&claim.order_id);

        if let Some(order) = self.store.get_json::<StoredOrder>(&order_key).await? {
            if order.owner_id != req.owner_id || order.idempotency_key != req.idempotency_key {
                // Only a supplied order_id can lead here: ids are never reused otherwise.
                if let Err(cause) = self.store.delete_if_eq(&claim_key, &claimed).await {
                    tracing::warn!(order = %claim.order_id, %cause, "could not free the Idempotency-Key");
                }
                return Err(ServiceError::AlreadyExists("order_id: already the id of another order".into()));
            }
            // The attempt that stored it may have stopped before indexing it.
            self.store.index_add(&model::owner_index(&order.owner_id), &order.id).await?;
            return Ok((order.to_proto(), false));
        }

        let lines = match self.articles.reserve(&claim.order_id, &req.items).await {
            Ok(lines) => lines,
            Err(
                e @ (ServiceError::FailedPrecondition(_)
                | ServiceError::NotFound(_)
                | ServiceError::InvalidArgument(_)),
            ) => {
                // As sent, this request can never succeed: free the key so the client can fix the
                // request (fewer units, another article) and send it again with the same key.
                // Only if it still holds the claim this request worked under: meanwhile a twin
                // attempt may have freed it and a fixed request claimed it anew, and deleting
                // that claim would let a retry of the fixed request make a second order.
                if let Err(cause) = self.store.delete_if_eq(&claim_key, &claimed).await {
                    tracing::warn!(order = %claim.order_id, %cause, "could not free the Idempotency-Key");
                }
                return Err(e);
            }
            // Unavailable, Aborted, ...: the claim stays, so retrying with the key resumes here.
            Err(e) => return Err(e),
        };

        let items: Vec<StoredItem> = lines
            .into_iter()
            .map(|l| StoredItem {
                article_id: l.article_id,
                quantity: l.quantity,
                unit_price_cents: l.unit_price_cents,
            })
            .collect();
        let total_cents =
            model::total_cents(&items).ok_or_else(|| ServiceError::internal("order total overflows"))?;
        let order = StoredOrder {
            created_at: model::created_at(&claim.order_id),
            id: claim.order_id,
            owner_id: req.owner_id,
            items,
            status: model::STATUS_CREATED.into(),
            total_cents,
            idempotency_key: req.idempotency_key,
        };
        let stored = self.store.set_nx_json(&order_key, &order, None).await?;
        let order = if stored {
            tracing::info!(order = %order.id, owner = %order.owner_id, total_cents, "order created");
            let (bounds, status) = (self.cfg.events.bounds(), model::STATUS_CREATED);
            crate::events::publish(&self.store, bounds, &order.owner_id, &order.id, status, "").await;
            order
        } else {
            // A concurrent attempt with the same key stored it first; that one is the order.
            self.store.get_json::<StoredOrder>(&order_key).await?.ok_or_else(|| {
                ServiceError::internal(format!("order {} vanished after being stored", order.id))
            })?
        };
        self.store.index_add(&model::owner_index(&order.owner_id), &order.id).await?;
        Ok((order.to_proto(), stored))
    }

    /// Binds the key to this request (and a new order id), or finds what it is bound to. Returns
    /// the claim and the value stored for it, which is what freeing it compares against.
    async fn claim(
        &self,
        key: &str,
        fingerprint: String,
        order_id: String,
    ) -> Result<(Claim, String), ServiceError> {
        let fresh = Claim { fingerprint, order_id };
        let encoded = serde_json::to_string(&fresh).map_err(ServiceError::internal)?;
        for _ in 0..CLAIM_ATTEMPTS {
            if self.store.set_nx(key, &encoded, Some(self.cfg.idempotency_ttl)).await? {
                return Ok((fresh, encoded));
            }
            let Some(stored) = self.store.get(key).await? else {
                // Freed since our set_nx (an attempt that failed for good): claim it again.
                continue;
            };
            let existing: Claim = decode(key, &stored)?;
            if existing.fingerprint != fresh.fingerprint {
                return Err(ServiceError::AlreadyExists(
                    "Idempotency-Key already used with a different request".into(),
                ));
            }
            return Ok((existing, stored));
        }
        Err(ServiceError::Aborted("the Idempotency-Key is busy, try again".into()))
    }
}
