//! `/v1/articles`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use mesh_proto::articles as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::authn::Principal;
use crate::clients::grpc;
use crate::context::RequestId;
use crate::error::ApiError;
use crate::json::{ValidJson, ValidQuery};
use crate::page::next_cursor;
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Article {
    pub id: String,
    pub title: String,
    pub body: String,
    pub price_cents: i64,
    pub stock: i64,
    pub created_at: i64,
}

impl From<pb::Article> for Article {
    fn from(a: pb::Article) -> Self {
        Self {
            id: a.id,
            title: a.title,
            body: a.body,
            price_cents: a.price_cents,
            stock: a.stock,
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArticlePage {
    pub articles: Vec<Article>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArticleBody {
    pub title: String,
    #[serde(default)]
    pub body: String,
    pub price_cents: i64,
    #[serde(default)]
    pub stock: i64,
}

/// `?q=&limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words that must all appear in the title or body.
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/articles", tag = "articles", params(SearchParams), responses((status = 200, body = ArticlePage)))]
pub async fn list_articles(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    ValidQuery(params): ValidQuery<SearchParams>,
) -> Result<Json<ArticlePage>, ApiError> {
    let request = pb::ListArticlesRequest {
        query: params.q.unwrap_or_default(),
        limit: params.limit.unwrap_or(0),
        cursor: params.cursor.unwrap_or_default(),
    };
    let listed = state
        .clients
        .articles
        .clone()
        .list_articles(grpc(&rid, state.clients.deadlines().articles, request))
        .await
        .map_err(|s| ApiError::from_status("articles", &s))?
        .into_inner();
    Ok(Json(ArticlePage {
        articles: listed.articles.into_iter().map(Article::from).collect(),
        next_cursor: next_cursor(listed.next_cursor),
    }))
}

#[utoipa::path(get, path = "/v1/articles/{id}", tag = "articles", params(("id" = String, Path, description = "article id")),
    responses((status = 200, body = Article), (status = 404, description = "no such article")))]
pub async fn get_article(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Json<Article>, ApiError> {
    let article = state
        .clients
        .articles
        .clone()
        .get_article(grpc(&rid, state.clients.deadlines().articles, pb::GetArticleRequest { id }))
        .await
        .map_err(|s| ApiError::from_status("articles", &s))?;
    Ok(Json(article.into_inner().into()))
}

#[utoipa::path(post, path = "/v1/articles", tag = "articles", request_body = CreateArticleBody,
    responses((status = 201, body = Article), (status = 403, description = "admin role required")))]
pub async fn create_article(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    Extension(principal): Extension<Principal>,
    ValidJson(body): ValidJson<CreateArticleBody>,
) -> Result<impl IntoResponse, ApiError> {
    if !principal.is_admin() {
        return Err(ApiError::forbidden("creating articles needs the admin role"));
    }
    let request = pb::CreateArticleRequest {
        actor: Some(pb::Actor { user_id: principal.user_id, roles: principal.roles }),
        title: body.title,
        body: body.body,
        price_cents: body.price_cents,
        stock: body.stock,
    };
    let article = state
        .clients
        .articles
        .clone()
        .create_article(grpc(&rid, state.clients.deadlines().articles, request))
        .await
        .map_err(|s| ApiError::from_status("articles", &s))?
        .into_inner();
    let location = HeaderValue::from_str(&format!("/v1/articles/{}", article.id)).ok();
    let mut response = (StatusCode::CREATED, Json(Article::from(article))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}
