//! The business domain: `/v1/orders`, `/v1/articles`, `/v1/analytics`, `/v1/dashboard`.

pub mod analytics;
pub mod articles;
pub mod dashboard;
pub mod live;
pub mod order_events;
pub mod orders;
pub mod queue;

use axum::Router;
use axum::routing::{get, post};

use crate::authn::guarded;
use crate::state::AppState;

/// Business routes; every one needs a principal and is metered ([`guarded`]).
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/orders", guarded(state, post(orders::create_order).get(orders::list_orders)))
        .route("/v1/orders/{id}", guarded(state, get(orders::get_order)))
        .route("/v1/orders/{id}/events", guarded(state, get(order_events::order_events)))
        .route("/v1/articles", guarded(state, get(articles::list_articles).post(articles::create_article)))
        .route("/v1/articles/{id}", guarded(state, get(articles::get_article)))
        .route("/v1/analytics/events", guarded(state, post(analytics::record_event)))
        .route("/v1/analytics/summary", guarded(state, get(analytics::summary)))
        .route("/v1/analytics/live", guarded(state, get(live::live)))
        .route("/v1/dashboard", guarded(state, get(dashboard::dashboard)))
}
