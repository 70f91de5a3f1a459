//! `mesh.orders.v1.OrdersService`: the gRPC surface. Each method delegates to `create.rs`,
//! `read.rs` or `events.rs`; errors become a status in one place, `From<ServiceError> for Status`.

use mesh_core::shutdown::Drain;
use mesh_core::store::Store;
use mesh_proto::orders::orders_service_server::OrdersService;
use mesh_proto::orders::{
    CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order, OrderEvent,
    WatchOrderRequest,
};
use tonic::{Request, Response, Status};

use crate::articles::Articles;
use crate::config::Config;

/// The orders service; all its state is in `store`, so replicas are interchangeable.
pub struct OrdersApi {
    pub(crate) cfg: Config,
    pub(crate) store: Store,
    pub(crate) articles: Articles,
    /// Triggered when the replica drains: order watches end then, or the drain would wait for them.
    pub(crate) stop: Drain,
}

// === impl OrdersApi ===

impl OrdersApi {
    pub(crate) fn new(cfg: Config, store: Store, articles: Articles, stop: Drain) -> Self {
        Self { cfg, store, articles, stop }
    }
}

type OrderEventStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<OrderEvent, Status>> + Send>>;

#[tonic::async_trait]
impl OrdersService for OrdersApi {
    type WatchOrderStream = OrderEventStream;

    async fn watch_order(
        &self,
        request: Request<WatchOrderRequest>,
    ) -> Result<Response<Self::WatchOrderStream>, Status> {
        Ok(Response::new(Box::pin(self.watch(request.into_inner()).await?)))
    }

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
