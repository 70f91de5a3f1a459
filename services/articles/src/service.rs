//! `mesh.articles.v1.ArticlesService`: the gRPC surface. Each method converts the request and
//! delegates to the catalogue (`catalog.rs`) or the stock (`stock.rs`); errors become a status in
//! one place, `From<ServiceError> for Status`.

use mesh_core::store::Store;
use mesh_proto::articles::articles_service_server::ArticlesService;
use mesh_proto::articles::{
    Article, CreateArticleRequest, GetArticleRequest, ListArticlesRequest, ListArticlesResponse,
    ReleaseStockRequest, ReleaseStockResponse, ReserveStockRequest, ReserveStockResponse,
};
use tonic::{Request, Response, Status};

use crate::config::Config;

/// The articles service; all its state is in `store`, so replicas are interchangeable.
pub struct ArticlesApi {
    pub(crate) cfg: Config,
    pub(crate) store: Store,
}

// === impl ArticlesApi ===

impl ArticlesApi {
    pub fn new(cfg: Config, store: Store) -> Self {
        Self { cfg, store }
    }
}

#[tonic::async_trait]
impl ArticlesService for ArticlesApi {
    async fn create_article(
        &self,
        request: Request<CreateArticleRequest>,
    ) -> Result<Response<Article>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_article(&self, request: Request<GetArticleRequest>) -> Result<Response<Article>, Status> {
        Ok(Response::new(self.get(&request.into_inner().id).await?))
    }

    async fn list_articles(
        &self,
        request: Request<ListArticlesRequest>,
    ) -> Result<Response<ListArticlesResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<ReserveStockResponse>, Status> {
        Ok(Response::new(self.reserve(request.into_inner()).await?))
    }

    async fn release_stock(
        &self,
        request: Request<ReleaseStockRequest>,
    ) -> Result<Response<ReleaseStockResponse>, Status> {
        let released = self.release(&request.into_inner().reservation_id).await?;
        Ok(Response::new(ReleaseStockResponse { released }))
    }
}
