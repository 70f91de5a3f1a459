//! `/v1/articles`.
//!
//! The catalogue is public: the same answer for every principal. So the reads go through the
//! response cache ([`fallback::read_cached`]), keyed by what is asked of the service (query,
//! limit, cursor; or the id) and shared by every principal and gateway replica: answered from
//! the store for `response_cache_ttl` (`Cache-Status: mesh-gateway; hit`), and when the articles
//! service is out, the last answer of any age is served degraded. Creating an article does not
//! invalidate anything: lists (and stock figures) may be up to `response_cache_ttl` stale.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh_proto::articles as pb;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::authn::Principal;
use crate::clients::CallError;
use crate::error::ApiError;
use crate::fallback;
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

/// The cache key of a list request: what the service is asked, so equal requests share it.
pub fn list_key(request: &pb::ListArticlesRequest) -> String {
    let asked = format!("{}\n{}\n{}", request.query, request.limit, request.cursor);
    format!("articles:list:{}", fallback::digest(&asked))
}

fn article_key(id: &str) -> String {
    format!("articles:get:{}", fallback::digest(id))
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
    #[serde(deserialize_with = "crate::json::integer")]
    pub price_cents: i64,
    #[serde(default, deserialize_with = "crate::json::integer")]
    pub stock: i64,
}

/// `?q=&limit=&cursor=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words that must all appear in the title or body.
    pub q: Option<String>,
    #[serde(default, deserialize_with = "crate::json::optional_integer")]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl From<pb::ListArticlesResponse> for ArticlePage {
    fn from(listed: pb::ListArticlesResponse) -> Self {
        Self {
            articles: listed.articles.into_iter().map(Article::from).collect(),
            next_cursor: next_cursor(listed.next_cursor),
        }
    }
}

#[utoipa::path(get, path = "/v1/articles", tag = "articles", params(SearchParams),
    responses((status = 200, body = ArticlePage, description = "`Cache-Status` says whether it came from the response cache; `x-mesh-fallback: degraded` and `\"degraded\": true` when the articles service is out"),
        (status = 503, description = "the articles service is out and this list was never read")))]
pub async fn list_articles(
    State(state): State<AppState>,
    ValidQuery(params): ValidQuery<SearchParams>,
) -> Result<Response, ApiError> {
    let request = pb::ListArticlesRequest {
        query: params.q.unwrap_or_default(),
        limit: params.limit.unwrap_or(0),
        cursor: params.cursor.unwrap_or_default(),
    };
    let key = list_key(&request);
    let live = async {
        state.articles.list_articles(request).await.map(ArticlePage::from).map_err(CallError::into_status)
    };
    fallback::read_cached(&state.lkg, &key, state.cfg.response_cache_ttl, "articles", live).await
}

#[utoipa::path(get, path = "/v1/articles/{id}", tag = "articles", params(("id" = String, Path, description = "article id")),
    responses((status = 200, body = Article, description = "as for the list: cached, or degraded when the articles service is out"),
        (status = 404, description = "no such article"),
        (status = 503, description = "the articles service is out and this article was never read")))]
pub async fn get_article(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let key = article_key(&id);
    let live = async {
        state
            .articles
            .get_article(pb::GetArticleRequest { id })
            .await
            .map(Article::from)
            .map_err(CallError::into_status)
    };
    fallback::read_cached(&state.lkg, &key, state.cfg.response_cache_ttl, "articles", live).await
}

#[utoipa::path(post, path = "/v1/articles", tag = "articles", request_body = CreateArticleBody,
    responses((status = 201, body = Article), (status = 403, description = "admin role required")))]
pub async fn create_article(
    State(state): State<AppState>,
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
    let article = state.articles.create_article(request).await?;
    let location = HeaderValue::from_str(&format!("/v1/articles/{}", article.id)).ok();
    let mut response = (StatusCode::CREATED, Json(Article::from(article))).into_response();
    if let Some(location) = location {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}
