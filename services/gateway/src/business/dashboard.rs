//! `/v1/dashboard`: orders, articles and analytics fetched in parallel and merged. The dashboard
//! always answers 200, whatever is down: a section whose service failed is its last known data,
//! `{"status": "degraded", "data": …, "age": <s>}`, or `{"status": "unavailable"}` when none is
//! remembered. Each section is remembered when it succeeds: orders and activity under their
//! owner (private), articles under the same key as the equal `GET /v1/articles` (public). An
//! answer with any section not live is marked `x-mesh-fallback: degraded` (with `Age` of the
//! oldest snapshot used, if any).

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use mesh_proto::{analytics, articles, orders};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::analytics::{Summary, summary_key};
use super::articles::{Article, ArticlePage, list_key};
use super::orders::Order;
use crate::authn::Principal;
use crate::clients::CallError;
use crate::fallback::{self, Fallback, LastKnownGood, is_outage};
use crate::state::AppState;

/// How many of the newest orders and first articles the dashboard shows.
const SECTION_SIZE: u32 = 5;

/// The summary window of the activity section.
const ACTIVITY_WINDOW: &str = "24h";

/// One part of the dashboard.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Section<T> {
    Ok {
        data: T,
    },
    /// The section's last known data, `age` seconds old, because its service failed.
    Degraded {
        #[schema(value_type = Object)]
        data: Value,
        age: u64,
    },
    Unavailable,
}

impl<T> Section<T> {
    fn is_live(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }

    fn snapshot_age(&self) -> Option<u64> {
        match self {
            Self::Degraded { age, .. } => Some(*age),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    #[schema(value_type = Object)]
    pub recent_orders: Section<Vec<Order>>,
    #[schema(value_type = Object)]
    pub articles: Section<Vec<Article>>,
    #[schema(value_type = Object)]
    pub activity: Section<Summary>,
}

/// A section from its call's `result`: live (and remembered as `T` under `key`), or the last
/// known `T` (shown through `shown`), or unavailable.
async fn section<T: Serialize, U>(
    lkg: &LastKnownGood,
    service: &'static str,
    key: &str,
    result: Result<T, tonic::Status>,
    into: impl FnOnce(T) -> U,
    shown: impl FnOnce(Value) -> Value,
) -> Section<U> {
    match result {
        Ok(value) => {
            lkg.remember_live(key, &value).await;
            Section::Ok { data: into(value) }
        }
        Err(status) => {
            tracing::warn!(service, code = ?status.code(), "dashboard section unavailable");
            metrics::counter!("gateway_dashboard_sections_unavailable_total", "service" => service)
                .increment(1);
            let snapshot = if is_outage(&status) { lkg.recall::<Value>(key).await } else { None };
            match snapshot {
                Some(s) => Section::Degraded { data: shown(s.value), age: s.age.as_secs() },
                None => Section::Unavailable,
            }
        }
    }
}

#[utoipa::path(get, path = "/v1/dashboard", tag = "dashboard",
    responses((status = 200, body = Dashboard, description = "always 200; sections whose service failed are `degraded` (last known data) or `unavailable`")))]
pub async fn dashboard(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Response {
    let owner = principal.user_id;
    let articles_request =
        articles::ListArticlesRequest { query: String::new(), limit: SECTION_SIZE, cursor: String::new() };
    let (orders_key, articles_key, activity_key) = (
        format!("dashboard:orders:{owner}"),
        list_key(&articles_request),
        summary_key(&owner, ACTIVITY_WINDOW),
    );
    let (orders, articles, activity) = tokio::join!(
        state.orders.list_orders(orders::ListOrdersRequest {
            owner_id: owner.clone(),
            limit: SECTION_SIZE,
            cursor: String::new(),
        }),
        state.articles.list_articles(articles_request),
        state
            .analytics
            .get_summary(analytics::GetSummaryRequest { owner_id: owner, window: ACTIVITY_WINDOW.into() }),
    );
    let lkg = &state.lkg;
    let orders = orders.map(|r| r.orders.into_iter().map(Order::from).collect::<Vec<_>>());
    let orders = orders.map_err(CallError::into_status);
    let articles = articles.map(ArticlePage::from).map_err(CallError::into_status);
    let activity = activity.map(Summary::from).map_err(CallError::into_status);
    let (recent_orders, articles, activity) = tokio::join!(
        section(lkg, "orders", &orders_key, orders, |o| o, |v| v),
        // Remembered as the page `GET /v1/articles?limit=5` answers; the section shows its list.
        section(lkg, "articles", &articles_key, articles, |p| p.articles, |v| v["articles"].clone()),
        section(lkg, "analytics", &activity_key, activity, |s| s, |v| v),
    );
    let live = recent_orders.is_live() && articles.is_live() && activity.is_live();
    let oldest = [recent_orders.snapshot_age(), articles.snapshot_age(), activity.snapshot_age()]
        .into_iter()
        .flatten()
        .max();
    let mut response = Json(Dashboard { recent_orders, articles, activity }).into_response();
    if !live {
        fallback::mark(response.headers_mut(), Fallback::Degraded, oldest.map(Duration::from_secs));
    }
    response
}
