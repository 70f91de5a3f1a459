//! The order queue: entries a gateway appended while no orders replica ran are created exactly
//! once per key when replicas are back, rejections are recorded and acknowledged, and entries a
//! dead consumer held are taken over.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mesh_core::ids::new_id;
use mesh_core::store::{Store, StoreConfig};
use mesh_proto::orders::{GetOrderRequest, ListOrdersRequest, Order};
use mesh_tests::wait_until;
use orders_service::queue::{FIELD_ORDER, FIELD_REQUEST_ID, GROUP, QueuedItem, QueuedOrder, STREAM};
use orders_service::{Config, QueueConfig};
use support::{Mesh, Orders, order, orders_config, start_orders};
use tokio::net::TcpListener;

/// Appends what a gateway appends for one queued order; returns the order id it was given.
async fn enqueue(store: &Store, owner: &str, key: &str, order_id: &str, items: &[(&str, u32)]) {
    let queued = QueuedOrder {
        owner_id: owner.into(),
        idempotency_key: key.into(),
        order_id: order_id.into(),
        items: items.iter().map(|(a, q)| QueuedItem { article_id: (*a).into(), quantity: *q }).collect(),
    };
    let json = serde_json::to_string(&queued).unwrap();
    store.stream_add(STREAM, &[(FIELD_ORDER, &json), (FIELD_REQUEST_ID, "test-request")]).await.unwrap();
}

/// An orders config that drains the queue quickly.
fn fast(store: StoreConfig, articles: Vec<String>) -> Config {
    let mut cfg = orders_config(store, articles);
    cfg.queue = QueueConfig {
        poll_interval: Duration::from_millis(20),
        retry_interval: Duration::from_millis(100),
        claim_idle: Duration::from_millis(500),
        batch_size: 16,
        ..QueueConfig::default()
    };
    cfg
}

/// Waits (at most `timeout`) until every entry is acknowledged.
async fn drained(store: &Store, timeout: Duration) -> bool {
    wait_until(timeout, || async move { store.stream_len(STREAM).await.unwrap() == 0 }).await
}

async fn list_all(client: &mut Orders, owner: &str) -> Vec<Order> {
    let mut orders = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_orders(ListOrdersRequest { owner_id: owner.into(), limit: 100, cursor })
            .await
            .unwrap()
            .into_inner();
        orders.extend(page.orders);
        if page.next_cursor.is_empty() {
            return orders;
        }
        cursor = page.next_cursor;
    }
}

async fn get(client: &mut Orders, owner: &str, id: &str) -> Result<Order, tonic::Status> {
    client.get_order(GetOrderRequest { owner_id: owner.into(), id: id.into() }).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn orders_queued_while_no_replica_runs_are_created_exactly_once_when_replicas_start() {
    const ORDERS: usize = 40;
    let mut mesh = Mesh::start(1, 0).await;
    let lamp = mesh.article(2_500, 1_000).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    let owner = new_id();

    // Queued with no orders replica (and no consumer group) anywhere; a quarter twice.
    let mut queued = Vec::new();
    for k in 0..ORDERS {
        let id = new_id();
        enqueue(&store, &owner, &format!("key-{k}"), &id, &[(&lamp, 2)]).await;
        queued.push(id);
    }
    for (k, id) in queued.iter().enumerate().take(ORDERS / 4) {
        enqueue(&store, &owner, &format!("key-{k}"), id, &[(&lamp, 2)]).await;
    }
    assert_eq!(store.stream_len(STREAM).await.unwrap(), (ORDERS + ORDERS / 4) as u64);

    // Two replicas start and share the work.
    let started = Instant::now();
    let endpoints = vec![mesh.articles[0].uri()];
    let (_a, mut client) = start_orders(fast(mesh.orders_store.clone(), endpoints.clone())).await;
    let (_b, _) = start_orders(fast(mesh.orders_store.clone(), endpoints)).await;
    assert!(drained(&store, Duration::from_secs(20)).await, "the queue was not drained");
    println!("{} entries for {ORDERS} keys drained in {:?}", ORDERS + ORDERS / 4, started.elapsed());

    let orders = list_all(&mut client, &owner).await;
    assert_eq!(orders.len(), ORDERS, "one order per key");
    let ids: HashSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, queued.iter().map(String::as_str).collect(), "each order keeps its queued id");
    let keys: HashSet<&str> = orders.iter().map(|o| o.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), ORDERS);
    assert!(orders.iter().all(|o| o.status == "created" && o.total_cents == 5_000));
    assert_eq!(mesh.stock(&lamp).await, 1_000 - 2 * ORDERS as i64, "stock taken once per key");
    // Nothing left pending for anyone.
    assert!(store.stream_claim(STREAM, GROUP, "probe", Duration::ZERO, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_duplicate_entry_for_the_same_key_creates_no_second_order() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(100, 10).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    let owner = new_id();
    let mut client = mesh.clients[0].clone();

    // Created straight away (before an outage), then queued again under another id.
    let first = client.create_order(order(&owner, "k", &[(&lamp, 1)])).await.unwrap().into_inner();
    let late_id = new_id();
    enqueue(&store, &owner, "k", &late_id, &[(&lamp, 1)]).await;
    // And a key queued twice under one id.
    let twin_id = new_id();
    enqueue(&store, &owner, "twin", &twin_id, &[(&lamp, 1)]).await;
    enqueue(&store, &owner, "twin", &twin_id, &[(&lamp, 1)]).await;
    assert!(drained(&store, Duration::from_secs(10)).await);

    let orders = list_all(&mut client, &owner).await;
    let mut ids: Vec<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec![first.id.as_str(), twin_id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(mesh.stock(&lamp).await, 8);
    // The id given to the late copy leads to the order its key already had.
    assert_eq!(get(&mut client, &owner, &late_id).await.unwrap(), first);
    // And to no one else.
    assert_eq!(get(&mut client, &new_id(), &late_id).await.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_entry_whose_article_is_unknown_is_rejected_and_acked_not_retried_forever() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(100, 1).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    let owner = new_id();
    let mut client = mesh.clients[0].clone();

    let (unknown, short) = (new_id(), new_id());
    enqueue(&store, &owner, "unknown", &unknown, &[(&new_id(), 1)]).await;
    enqueue(&store, &owner, "short", &short, &[(&lamp, 5)]).await;
    assert!(drained(&store, Duration::from_secs(10)).await, "a refused entry must be acknowledged");

    let rejected = get(&mut client, &owner, &unknown).await.unwrap();
    assert_eq!(rejected.status, "rejected");
    assert!(rejected.reason.contains("not found"), "{}", rejected.reason);
    assert_eq!((rejected.id.as_str(), rejected.idempotency_key.as_str()), (unknown.as_str(), "unknown"));
    let short_stock = get(&mut client, &owner, &short).await.unwrap();
    assert_eq!(short_stock.status, "rejected");
    assert!(short_stock.reason.contains("in stock"), "{}", short_stock.reason);
    assert!(list_all(&mut client, &owner).await.is_empty(), "a rejection is not an order");
    assert_eq!(mesh.stock(&lamp).await, 1);
    // Only its owner sees it.
    assert_eq!(get(&mut client, &new_id(), &unknown).await.unwrap_err().code(), tonic::Code::NotFound);

    // The key is free again: the client fixes the order and sends it with the same key.
    let mut fixed = order(&owner, "short", &[(&lamp, 1)]);
    fixed.order_id = short.clone();
    let created = client.create_order(fixed).await.unwrap().into_inner();
    assert_eq!((created.id.as_str(), created.status.as_str()), (short.as_str(), "created"));
    assert_eq!(get(&mut client, &owner, &short).await.unwrap(), created);
}

#[tokio::test]
async fn entries_a_dead_consumer_held_are_claimed_by_a_live_replica() {
    let mut mesh = Mesh::start(1, 0).await;
    let lamp = mesh.article(100, 10).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    let owner = new_id();
    let id = new_id();
    enqueue(&store, &owner, "k", &id, &[(&lamp, 1)]).await;
    // A replica read it and died before acknowledging.
    store.stream_create_group(STREAM, GROUP).await.unwrap();
    assert_eq!(store.stream_read(STREAM, GROUP, "orders-dead", 10).await.unwrap().len(), 1);

    let started = Instant::now();
    let (_orders, mut client) =
        start_orders(fast(mesh.orders_store.clone(), vec![mesh.articles[0].uri()])).await;
    assert!(drained(&store, Duration::from_secs(10)).await, "the dead consumer's entry was never taken over");
    println!("taken over after {:?} (claim idle 500ms)", started.elapsed());
    assert_eq!(get(&mut client, &owner, &id).await.unwrap().status, "created");
    assert_eq!(mesh.stock(&lamp).await, 9);
}

#[tokio::test]
async fn an_entry_stays_queued_while_articles_is_down_and_is_created_when_it_is_back() {
    let mut mesh = Mesh::start(1, 0).await;
    let lamp = mesh.article(100, 10).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    // This orders replica reaches articles only at an address where nothing listens yet.
    let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let (_orders, mut client) =
        start_orders(fast(mesh.orders_store.clone(), vec![format!("http://{addr}")])).await;
    let owner = new_id();
    let id = new_id();
    enqueue(&store, &owner, "k", &id, &[(&lamp, 3)]).await;

    // Tried several times (retry every 100ms) and failing: never acknowledged, never rejected.
    let acked =
        wait_until(Duration::from_millis(800), || async { store.stream_len(STREAM).await.unwrap() == 0 });
    assert!(!acked.await, "a transient failure must leave the entry queued");
    assert_eq!(get(&mut client, &owner, &id).await.unwrap_err().code(), tonic::Code::NotFound);

    let listener = TcpListener::bind(addr).await.unwrap();
    let cfg = articles_service::Config { store: mesh.articles_store.clone(), ..Default::default() };
    let never: mesh_core::process::Shutdown = Box::pin(std::future::pending());
    let articles = tokio::spawn(articles_service::serve(cfg, listener, never));
    assert!(drained(&store, Duration::from_secs(15)).await, "not created after articles came back");
    assert_eq!(get(&mut client, &owner, &id).await.unwrap().status, "created");
    assert_eq!(mesh.stock(&lamp).await, 7);
    articles.abort();
}

#[tokio::test]
async fn a_draining_replica_stops_consuming() {
    let mesh = Mesh::start(1, 0).await;
    let store = Store::connect(&mesh.orders_store).await.unwrap();
    let (orders, _) = start_orders(fast(mesh.orders_store.clone(), vec![mesh.articles[0].uri()])).await;
    // The consumer is up once the group exists.
    assert!(
        wait_until(Duration::from_secs(5), || async {
            store.stream_read(STREAM, GROUP, "p", 1).await.is_ok()
        })
        .await
    );
    orders.stop().await.unwrap();
    // An unknown article: a live consumer would reject and acknowledge it within milliseconds.
    enqueue(&store, &new_id(), "k", &new_id(), &[(&new_id(), 1)]).await;
    let taken =
        wait_until(Duration::from_millis(500), || async { store.stream_len(STREAM).await.unwrap() == 0 });
    assert!(!taken.await, "a stopped replica must not take entries");
    assert_eq!(store.stream_read(STREAM, GROUP, "next", 10).await.unwrap().len(), 1, "still new");
}
