//! `mesh.orders.v1.OrdersService`: the gRPC surface. Each method delegates to `create.rs` or
//! `read.rs`; errors become a status in one place, `From<ServiceError> for Status`.

use mesh_core::store::Store;
use mesh_proto::orders::orders_service_server::OrdersService;
use mesh_proto::orders::{CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order};
use tonic::{Request, Response, Status};

use crate::articles::Articles;
use crate::config::Config;

/// The orders service; all its state is in `store`, so replicas are interchangeable.
pub struct OrdersApi {
    pub(crate) cfg: Config,
    pub(crate) store: Store,
    pub(crate) articles: Articles,
}

// === impl OrdersApi ===

impl OrdersApi {
    pub(crate) fn new(cfg: Config, store: Store, articles: Articles) -> Self {
        Self { cfg, store, articles }
    }
}

#[tonic::async_trait]
impl OrdersService for OrdersApi {
    async fn create_order(&self, request: Request<CreateOrderRequest>) -> Result<Response<Order>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_order(&self, request: Request<GetOrderRequest>) -> Result<Response<Order>, Status> {
        Ok(Response::new(self.get(request.into_inner()).await?))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        Ok(Response::new(self.list(request.into_inner()).await?))
    }
}
