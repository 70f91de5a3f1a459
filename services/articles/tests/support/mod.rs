//! What the articles tests share: replicas on a real Redis, an admin, and short-hands.

#![allow(dead_code)]

use articles_service::Config;
use mesh_core::store::StoreConfig;
use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
use mesh_proto::articles::{
    Actor, Article, CreateArticleRequest, GetArticleRequest, ReserveStockRequest, StockLine,
};
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use tonic::transport::Channel;

pub(crate) type Client = ArticlesServiceClient<Channel>;

/// A store on `redis` that no other test sees.
pub(crate) fn redis_store(redis: &RedisServer) -> StoreConfig {
    StoreConfig {
        redis_url: Some(redis.url()),
        key_prefix: unique_prefix("articles"),
        ..StoreConfig::default()
    }
}

pub(crate) fn config(store: StoreConfig) -> Config {
    Config { store, ..Config::default() }
}

/// One articles replica on a port-0 listener, and a client connected to it.
pub(crate) async fn replica(cfg: Config) -> (Component, Client) {
    let component = Component::start(|listener, shutdown| articles_service::serve(cfg, listener, shutdown))
        .await
        .unwrap();
    let client = ArticlesServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

pub(crate) fn admin() -> Option<Actor> {
    Some(Actor { user_id: mesh_core::ids::new_id(), roles: vec!["admin".into()] })
}

pub(crate) fn new_article(title: &str, body: &str, price_cents: i64, stock: i64) -> CreateArticleRequest {
    CreateArticleRequest { actor: admin(), title: title.into(), body: body.into(), price_cents, stock }
}

pub(crate) async fn create(
    client: &mut Client,
    title: &str,
    body: &str,
    price_cents: i64,
    stock: i64,
) -> Article {
    client.create_article(new_article(title, body, price_cents, stock)).await.unwrap().into_inner()
}

pub(crate) async fn stock_of(client: &mut Client, id: &str) -> i64 {
    client.get_article(GetArticleRequest { id: id.into() }).await.unwrap().into_inner().stock
}

pub(crate) fn line(article_id: &str, quantity: u32) -> StockLine {
    StockLine { article_id: article_id.into(), quantity }
}

pub(crate) fn reservation(lines: Vec<StockLine>) -> ReserveStockRequest {
    ReserveStockRequest { reservation_id: mesh_core::ids::new_id(), lines }
}
