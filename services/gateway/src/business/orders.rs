//! `/v1/orders`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use mesh_proto::orders as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::json::{ValidJson, ValidQuery};
use crate::page::{PageParams, next_cursor};
use crate::state::AppState;

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub article_id: String,
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
    pub status: String,
    pub items: Vec<OrderItem>,
    pub total_cents: i64,
    pub created_at: i64,
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
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<Order>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The `Idempotency-Key` header: required, 1 to 128 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required to create an order"))?;
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=128).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(str::to_owned).ok_or_else(|| {
        ApiError::bad_request("Idempotency-Key: 1 to 128 printable ASCII characters without spaces")
    })
}

#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = CreateOrderBody,
    params(("Idempotency-Key" = String, Header, description = "the same key and body always give the same order")),
    responses((status = 201, body = Order), (status = 409, description = "key reused with another body, or out of stock")))]
pub async fn create_order(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ValidJson(body): ValidJson<CreateOrderBody>,
) -> Result<impl IntoResponse, ApiError> {
    let key = idempotency_key(&headers)?;
    let items = body
        .items
        .into_iter()
        .map(|l| pb::OrderItem { article_id: l.article_id, quantity: l.quantity, unit_price_cents: 0 })
        .collect();
    let request = pb::CreateOrderRequest { owner_id: principal.user_id, idempotency_key: key, items };
    let order = state
        .clients
        .orders
        .clone()
        .create_order(grpc(&rid, state.clients.deadlines().orders, request))
        .await
        .map_err(|s| ApiError::from_status("orders", &s))?
        .into_inner();
    let location = HeaderValue::from_str(&format!("/v1/orders/{}", order.id)).ok();
    let mut response = (StatusCode::CREATED, Json(Order::from(order))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(PageParams), responses((status = 200, body = OrderPage)))]
pub async fn list_orders(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    ValidQuery(page): ValidQuery<PageParams>,
) -> Result<Json<OrderPage>, ApiError> {
    let request = pb::ListOrdersRequest {
        owner_id: principal.user_id,
        limit: page.limit.unwrap_or(0),
        cursor: page.cursor.unwrap_or_default(),
    };
    let listed = state
        .clients
        .orders
        .clone()
        .list_orders(grpc(&rid, state.clients.deadlines().orders, request))
        .await
        .map_err(|s| ApiError::from_status("orders", &s))?
        .into_inner();
    Ok(Json(OrderPage {
        orders: listed.orders.into_iter().map(Order::from).collect(),
        next_cursor: next_cursor(listed.next_cursor),
    }))
}

#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", params(("id" = String, Path, description = "order id")),
    responses((status = 200, body = Order), (status = 404, description = "no such order of yours")))]
pub async fn get_order(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    let request = pb::GetOrderRequest { owner_id: principal.user_id, id };
    let order = state
        .clients
        .orders
        .clone()
        .get_order(grpc(&rid, state.clients.deadlines().orders, request))
        .await
        .map_err(|s| ApiError::from_status("orders", &s))?;
    Ok(Json(order.into_inner().into()))
}
