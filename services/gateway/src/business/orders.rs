//! `/v1/orders`, and what it answers while the orders service is down (docs/ARCHITECTURE.md §5):
//! - `POST`: with a valid Idempotency-Key and a valid body, the order is queued durably and
//!   answered `202 {id, status: "queued"}` ([`super::queue`]); a body that could never become an
//!   order is refused first, here, with the rules the orders service applies, because a queued
//!   order the service rejects later is one the client was told was accepted;
//! - `GET /v1/orders/{id}`: a queued order of the caller answers `status: "queued"` until the
//!   orders service knows it (the service answers NOT_FOUND until then);
//! - `GET /v1/orders`: the caller's last answer for the same page, marked degraded, else 503.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh_proto::orders as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::queue::{self, QueueError, QueuedLine};
use crate::authn::Principal;
use crate::clients::CallError;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::fallback::{self, Fallback, is_outage};
use crate::json::{ValidJson, ValidQuery};
use crate::page::{PageParams, next_cursor};
use crate::state::AppState;

pub use mesh_core::headers::IDEMPOTENCY_KEY;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub article_id: String,
    #[serde(deserialize_with = "crate::json::integer")]
    pub quantity: u32,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderBody {
    pub items: Vec<OrderLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderItem {
    pub article_id: String,
    pub quantity: u32,
    pub unit_price_cents: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    /// `created`, or `rejected` for an order queued during an outage that could not be created.
    pub status: String,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub created_at: i64,
    /// Why the order was rejected (only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl From<pb::Order> for Order {
    fn from(o: pb::Order) -> Self {
        Self {
            id: o.id,
            status: o.status,
            items: o
                .items
                .into_iter()
                .map(|i| OrderItem {
                    article_id: i.article_id,
                    quantity: i.quantity,
                    unit_price_cents: i.unit_price_cents,
                })
                .collect(),
            total_cents: o.total_cents,
            created_at: o.created_at,
            reason: (!o.reason.is_empty()).then_some(o.reason),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// Present (true) when this is the last page remembered, answered while orders is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

/// `202` to an order queued while the orders service is down.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub id: String,
    /// Always `queued`.
    pub status: String,
}

// === impl CreateOrderBody ===

impl CreateOrderBody {
    /// The orders service's own rule ([`mesh_core::contracts::check_order_lines`]), so that an
    /// order queued while it is down is one it will take.
    pub fn validate(&self) -> Result<(), ApiError> {
        let lines = self.items.iter().map(|item| (item.article_id.as_str(), item.quantity));
        mesh_core::contracts::check_order_lines("items", lines).map_err(ApiError::bad_request)
    }

    /// The lines as the order queue keeps them.
    pub fn lines(&self) -> Vec<QueuedLine> {
        let line = |l: &OrderLine| QueuedLine { article_id: l.article_id.clone(), quantity: l.quantity };
        self.items.iter().map(line).collect()
    }
}

/// The `Idempotency-Key` header: required, the orders service's rule
/// ([`mesh_core::contracts::check_idempotency_key`]).
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required to create an order"))?;
    let key = value.to_str().unwrap_or("");
    mesh_core::contracts::check_idempotency_key("Idempotency-Key", key).map_err(ApiError::bad_request)?;
    Ok(key.to_owned())
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = CreateOrderBody,
    params(("Idempotency-Key" = String, Header, description = "the same key and body always give the same order")),
    responses((status = 201, body = Order),
        (status = 202, body = Accepted,
            description = "the orders service is down: queued, created under this id when it is back"),
        (status = 400, description = "the body or the key is invalid"),
        (status = 404, description = "an article of the order does not exist"),
        (status = 409, description = "key reused with another body, or out of stock"),
        (status = 503, description = "the orders service is down and the order could not be queued")))]
pub async fn create_order(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ValidJson(body): ValidJson<CreateOrderBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    body.validate()?;
    let owner = principal.user_id;
    let lines = body.lines();
    let fingerprint = queue::fingerprint(&lines);
    // A key queued earlier keeps the id its client was given.
    let bound = queue::bound_order_id(&state.store, &owner, &key, &fingerprint).await;
    let request = pb::CreateOrderRequest {
        owner_id: owner.clone(),
        idempotency_key: key.clone(),
        items: body
            .items
            .iter()
            .map(|l| pb::OrderItem {
                article_id: l.article_id.clone(),
                quantity: l.quantity,
                unit_price_cents: 0,
            })
            .collect(),
        order_id: bound.clone().unwrap_or_default(),
    };
    match state.orders.create_order(request).await {
        Ok(order) => {
            if bound.as_deref() != Some(order.id.as_str()) {
                queue::bind_created(&state.store, &owner, &key, &fingerprint, &order.id).await;
            }
            let id = order.id.clone();
            Ok(with_location(StatusCode::CREATED, &id, Json(Order::from(order))))
        }
        Err(CallError { status, .. }) if is_outage(&status) => {
            let (code, message) = (status.code(), status.message());
            tracing::warn!(?code, status = %message, "orders unavailable; queueing the order");
            match queue::enqueue(&state.store, &state.cfg.order_queue, rid.as_str(), &owner, &key, &lines)
                .await
            {
                Ok(queued) => {
                    let accepted = Accepted { id: queued.order.id, status: queued.order.status };
                    let id = accepted.id.clone();
                    let mut response = with_location(StatusCode::ACCEPTED, &id, Json(accepted));
                    fallback::mark(response.headers_mut(), Fallback::Queued, None);
                    Ok(response)
                }
                Err(e @ QueueError::KeyReused) => {
                    Err(ApiError::new(StatusCode::CONFLICT, "conflict", "Conflict", e.to_string()))
                }
                Err(QueueError::Unavailable(cause)) => {
                    tracing::error!(%cause, "orders is down and the order could not be queued");
                    Err(ApiError::unavailable("the orders service is unavailable, try again shortly"))
                }
            }
        }
        Err(failure) => Err(failure.into()),
    }
}

fn with_location(status: StatusCode, id: &str, body: impl IntoResponse) -> Response {
    let mut response = (status, body).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(PageParams),
    responses((status = 200, body = OrderPage,
            description = "`degraded: true` (and `x-mesh-fallback: degraded`) while orders is down"),
        (status = 503, description = "orders is down and this page was never read")))]
pub async fn list_orders(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Response, ApiError> {
    let limit = page.limit.unwrap_or(0);
    let cursor = page.cursor.unwrap_or_default();
    // Per owner and page: a fallback never crosses principals.
    let snapshot =
        format!("orders/list:{}:{}", principal.user_id, fallback::digest(&format!("{limit}:{cursor}")));
    let request = pb::ListOrdersRequest { owner_id: principal.user_id, limit, cursor };
    match state.orders.list_orders(request).await {
        Ok(listed) => {
            let page = OrderPage {
                orders: listed.orders.into_iter().map(Order::from).collect(),
                next_cursor: next_cursor(listed.next_cursor),
                degraded: None,
            };
            Ok(fallback::live(&state.lkg, &snapshot, &page).await)
        }
        Err(CallError { service, status }) => {
            match fallback::after_failure(&state.lkg, &snapshot, Fallback::Degraded, service, &status).await {
                // An outage with nothing remembered: 503 (with Retry-After), a timeout too.
                Err(_) if is_outage(&status) => {
                    Err(ApiError::unavailable("the orders service is unavailable, try again shortly"))
                }
                answer => answer,
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path, description = "order id")),
    responses((status = 200, body = Order, description = "the order (`status: rejected` with a `reason` \
            for a queued order that could not be created); while it is queued and not created yet, \
            `x-mesh-fallback: queued` and `{id, status: \"queued\", items: [{article_id, quantity}], created_at}`"),
        (status = 404, description = "no such order of yours")))]
pub async fn get_order(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let owner = principal.user_id;
    let request = pb::GetOrderRequest { owner_id: owner.clone(), id: id.clone() };
    match state.orders.get_order(request).await {
        Ok(order) => Ok(Json(Order::from(order)).into_response()),
        Err(failure) if failure.status.code() == tonic::Code::NotFound || is_outage(&failure.status) => {
            // Not (yet) known to the orders service, or it is down: a queued order of this owner.
            match queue::queued(&state.store, &owner, &id).await {
                Some(queued) => {
                    let mut response = Json(queued).into_response();
                    fallback::mark(response.headers_mut(), Fallback::Queued, None);
                    Ok(response)
                }
                None => Err(failure.into()),
            }
        }
        Err(failure) => Err(failure.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_core::ids;

    fn body(items: Vec<(String, u32)>) -> CreateOrderBody {
        CreateOrderBody {
            items: items
                .into_iter()
                .map(|(article_id, quantity)| OrderLine { article_id, quantity })
                .collect(),
        }
    }

    fn field(b: CreateOrderBody) -> String {
        let err = b.validate().unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        err.problem.detail.split(':').next().unwrap_or_default().to_owned()
    }

    #[test]
    fn bodies_the_orders_service_would_refuse_are_refused_here() {
        let a = ids::new_id();
        assert!(body(vec![(a.clone(), 1)]).validate().is_ok());
        assert!(
            body(vec![(a.clone(), mesh_core::contracts::MAX_QUANTITY), (ids::new_id(), 1)])
                .validate()
                .is_ok()
        );
        assert_eq!(field(body(vec![])), "items");
        assert_eq!(field(body((0..51).map(|_| (ids::new_id(), 1)).collect())), "items");
        assert_eq!(field(body(vec![(a.clone(), 0)])), "items[0].quantity");
        assert_eq!(field(body(vec![(a.clone(), 1001)])), "items[0].quantity");
        assert_eq!(field(body(vec![(a.clone(), 1), ("x".into(), 1)])), "items[1].article_id");
        assert_eq!(field(body(vec![(String::new(), 1)])), "items[0].article_id");
        assert!(body(vec![(a.clone(), 1), (a, 2)]).validate().is_ok(), "an article may be on two lines");
    }
}
