//! The business domain: `/v1/orders`, `/v1/articles`, `/v1/analytics`, `/v1/dashboard`.

pub mod analytics;
pub mod articles;
pub mod dashboard;
pub mod live;
pub mod order_events;
pub mod orders;
pub mod queue;

use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::authn::authenticate;
use crate::quota::meter;
use crate::state::AppState;

/// Business routes; every one needs a principal and is metered.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(orders::create_order).get(orders::list_orders))
        .route("/v1/orders/{id}", get(orders::get_order))
        .route("/v1/orders/{id}/events", get(order_events::order_events))
        .route("/v1/articles", get(articles::list_articles).post(articles::create_article))
        .route("/v1/articles/{id}", get(articles::get_article))
        .route("/v1/analytics/events", post(analytics::record_event))
        .route("/v1/analytics/summary", get(analytics::summary))
        .route("/v1/analytics/live", get(live::live))
        .route("/v1/dashboard", get(dashboard::dashboard))
        // Metering needs the principal, so it runs after authentication (the outer layer).
        .route_layer(from_fn_with_state(Arc::new(state.meter.clone()), meter))
        .route_layer(from_fn_with_state(Arc::new(state.authn.clone()), authenticate))
}
