//! What the orders tests share: a small mesh of real articles and orders replicas on one Redis.

#![allow(dead_code)]

use std::time::Duration;

use mesh_core::client::ClientConfig;
use mesh_core::store::StoreConfig;
use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
use mesh_proto::articles::{Actor, CreateArticleRequest, GetArticleRequest};
use mesh_proto::orders::orders_service_client::OrdersServiceClient;
use mesh_proto::orders::{CreateOrderRequest, OrderItem};
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use orders_service::Config;
use tonic::transport::Channel;

pub(crate) type Orders = OrdersServiceClient<Channel>;
pub(crate) type Articles = ArticlesServiceClient<Channel>;

/// Articles and orders replicas sharing one Redis, each service under its own key prefix.
pub(crate) struct Mesh {
    pub(crate) redis: RedisServer,
    pub(crate) articles_store: StoreConfig,
    pub(crate) orders_store: StoreConfig,
    pub(crate) articles: Vec<Component>,
    pub(crate) orders: Vec<Component>,
    /// A client of the first articles replica, to seed articles and read stock.
    pub(crate) catalog: Articles,
    /// One client per orders replica.
    pub(crate) clients: Vec<Orders>,
}

impl Mesh {
    pub(crate) async fn start(articles_replicas: usize, orders_replicas: usize) -> Self {
        let redis = RedisServer::start().await.unwrap();
        let store = |name| StoreConfig {
            redis_url: Some(redis.url()),
            key_prefix: unique_prefix(name),
            ..StoreConfig::default()
        };
        let (articles_store, orders_store) = (store("articles"), store("orders"));
        let mut articles = Vec::new();
        for _ in 0..articles_replicas {
            articles.push(start_articles(articles_store.clone()).await);
        }
        let endpoints: Vec<String> = articles.iter().map(Component::uri).collect();
        let mut orders = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..orders_replicas {
            let (component, client) =
                start_orders(orders_config(orders_store.clone(), endpoints.clone())).await;
            orders.push(component);
            clients.push(client);
        }
        let catalog = ArticlesServiceClient::new(grpc_channel(articles[0].addr).await.unwrap());
        Self { redis, articles_store, orders_store, articles, orders, catalog, clients }
    }

    /// A new article with `stock` units at `price_cents`; returns its id.
    pub(crate) async fn article(&mut self, price_cents: i64, stock: i64) -> String {
        let req = CreateArticleRequest {
            actor: Some(Actor { user_id: mesh_core::ids::new_id(), roles: vec!["admin".into()] }),
            title: "Article".into(),
            body: String::new(),
            price_cents,
            stock,
        };
        self.catalog.create_article(req).await.unwrap().into_inner().id
    }

    pub(crate) async fn stock(&mut self, id: &str) -> i64 {
        self.catalog.get_article(GetArticleRequest { id: id.into() }).await.unwrap().into_inner().stock
    }
}

pub(crate) async fn start_articles(store: StoreConfig) -> Component {
    let cfg = articles_service::Config { store, ..articles_service::Config::default() };
    Component::start(|listener, shutdown| articles_service::serve(cfg, listener, shutdown)).await.unwrap()
}

/// Orders reaching `endpoints`, with short client timeouts so an outage answers quickly.
pub(crate) fn orders_config(store: StoreConfig, endpoints: Vec<String>) -> Config {
    let articles = ClientConfig {
        endpoints,
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    };
    Config { store, articles, ..Config::default() }
}

pub(crate) async fn start_orders(cfg: Config) -> (Component, Orders) {
    let component =
        Component::start(|listener, shutdown| orders_service::serve(cfg, listener, shutdown)).await.unwrap();
    let client = OrdersServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

pub(crate) fn order(owner_id: &str, key: &str, items: &[(&str, u32)]) -> CreateOrderRequest {
    CreateOrderRequest {
        owner_id: owner_id.into(),
        idempotency_key: key.into(),
        items: items
            .iter()
            .map(|(id, quantity)| OrderItem {
                article_id: (*id).into(),
                quantity: *quantity,
                unit_price_cents: 0,
            })
            .collect(),
        order_id: String::new(),
    }
}
