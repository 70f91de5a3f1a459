//! `/v1/dashboard`: orders, articles and analytics fetched in parallel and merged. A section
//! whose service failed says `{"status": "unavailable"}`; the others still answer.

use axum::Json;
use axum::extract::{Extension, State};
use mesh_proto::{analytics, articles, orders};
use serde::Serialize;
use utoipa::ToSchema;

use super::analytics::Summary;
use super::articles::Article;
use super::orders::Order;
use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::state::AppState;

/// How many of the newest orders and first articles the dashboard shows.
const SECTION_SIZE: u32 = 5;

/// One part of the dashboard.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Section<T> {
    Ok { data: T },
    Unavailable,
}

impl<T> Section<T> {
    fn from_result<R>(
        service: &'static str,
        result: Result<tonic::Response<R>, tonic::Status>,
        f: impl FnOnce(R) -> T,
    ) -> Self {
        match result {
            Ok(response) => Self::Ok { data: f(response.into_inner()) },
            Err(status) => {
                tracing::warn!(service, code = ?status.code(), "dashboard section unavailable");
                metrics::counter!("gateway_dashboard_sections_unavailable_total", "service" => service)
                    .increment(1);
                Self::Unavailable
            }
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

#[utoipa::path(get, path = "/v1/dashboard", tag = "dashboard", responses((status = 200, body = Dashboard)))]
pub async fn dashboard(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
) -> Json<Dashboard> {
    let deadlines = state.clients.deadlines();
    let (mut orders_client, mut articles_client, mut analytics_client) =
        (state.clients.orders.clone(), state.clients.articles.clone(), state.clients.analytics.clone());
    let owner = principal.user_id;
    let (orders, articles, activity) = tokio::join!(
        orders_client.list_orders(grpc(
            &rid,
            deadlines.orders,
            orders::ListOrdersRequest { owner_id: owner.clone(), limit: SECTION_SIZE, cursor: String::new() },
        )),
        articles_client.list_articles(grpc(
            &rid,
            deadlines.articles,
            articles::ListArticlesRequest {
                query: String::new(),
                limit: SECTION_SIZE,
                cursor: String::new()
            },
        )),
        analytics_client.get_summary(grpc(
            &rid,
            deadlines.analytics,
            analytics::GetSummaryRequest { owner_id: owner, window: "24h".into() },
        )),
    );
    Json(Dashboard {
        recent_orders: Section::from_result("orders", orders, |r| {
            r.orders.into_iter().map(Order::from).collect()
        }),
        articles: Section::from_result("articles", articles, |r| {
            r.articles.into_iter().map(Article::from).collect()
        }),
        activity: Section::from_result("analytics", activity, Summary::from),
    })
}
