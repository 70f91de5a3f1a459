//! Orders while articles is down: UNAVAILABLE (no crash, no internal address), reads still served,
//! and the same Idempotency-Key finishes the order once articles is back.

mod support;

use std::time::{Duration, Instant};

use mesh_core::ids::new_id;
use mesh_core::process::Shutdown;
use mesh_proto::orders::ListOrdersRequest;
use mesh_tests::wait_until;
use support::{Mesh, order, orders_config, start_orders};
use tokio::net::TcpListener;
use tonic::Code;

/// An address nothing listens on (yet): bound, noted, released.
async fn free_addr() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap()
}

#[tokio::test]
async fn orders_answers_unavailable_when_articles_is_down() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(2_500, 10).await;
    let owner = new_id();
    let placed =
        mesh.clients[0].create_order(order(&owner, "before", &[(&lamp, 1)])).await.unwrap().into_inner();

    // A drained stop: `Component::abort` ends the accept loop but not the connections tonic has
    // already spawned, so orders would keep talking to the "dead" replica.
    let articles = mesh.articles.pop().unwrap();
    let articles_addr = articles.addr;
    articles.stop().await.unwrap();
    let started = Instant::now();
    let err = mesh.clients[0].create_order(order(&owner, "during", &[(&lamp, 1)])).await.unwrap_err();
    println!("create with articles down answered {:?} in {:?}", err.code(), started.elapsed());
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let port = articles_addr.port().to_string();
    assert!(
        !err.message().contains("127.0.0.1") && !err.message().contains(&port),
        "leaks: {}",
        err.message()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "answered, not hung");

    // Still serving what needs no articles.
    let listed = mesh.clients[0]
        .list_orders(ListOrdersRequest { owner_id: owner, limit: 10, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.orders, [placed]);
}

#[tokio::test]
async fn retrying_the_key_after_an_articles_outage_finishes_the_order_once() {
    let mut mesh = Mesh::start(1, 0).await;
    let lamp = mesh.article(2_500, 10).await;
    // This orders replica reaches articles only at an address where nothing listens yet.
    let addr = free_addr().await;
    let cfg = orders_config(mesh.orders_store.clone(), vec![format!("http://{addr}")]);
    let (_orders, mut client) = start_orders(cfg).await;
    let owner = new_id();
    let req = order(&owner, "k", &[(&lamp, 2)]);

    let err = client.create_order(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(mesh.stock(&lamp).await, 10);

    // Articles comes up at that address (sharing the store of the first replica).
    let listener = TcpListener::bind(addr).await.unwrap();
    let cfg = articles_service::Config { store: mesh.articles_store.clone(), ..Default::default() };
    let never: Shutdown = Box::pin(std::future::pending());
    let articles = tokio::spawn(articles_service::serve(cfg, listener, never));

    let done = wait_until(Duration::from_secs(10), || {
        let mut client = client.clone();
        let req = req.clone();
        async move {
            match client.create_order(req).await {
                Ok(_) => true,
                Err(e) => {
                    assert_eq!(
                        e.code(),
                        Code::Unavailable,
                        "only unavailable while articles comes up: {e:?}"
                    );
                    false
                }
            }
        }
    })
    .await;
    assert!(done, "the order was not created within 10s of articles coming back");
    // Every later send answers that one order.
    let created = client.create_order(req.clone()).await.unwrap().into_inner();
    assert_eq!(client.create_order(req).await.unwrap().into_inner(), created);
    assert_eq!(created.total_cents, 2 * 2_500);
    assert_eq!(mesh.stock(&lamp).await, 8, "taken once");
    articles.abort();
}

#[tokio::test]
async fn a_hung_articles_is_unavailable_within_the_client_deadline() {
    let mut mesh = Mesh::start(1, 0).await;
    let lamp = mesh.article(2_500, 10).await;
    // Accepts TCP connections (the kernel does, into the backlog) but never speaks HTTP/2.
    let hung = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg =
        orders_config(mesh.orders_store.clone(), vec![format!("http://{}", hung.local_addr().unwrap())]);
    let deadline = cfg.articles.request_timeout;
    let (_orders, mut client) = start_orders(cfg).await;

    let started = Instant::now();
    let err = client.create_order(order(&new_id(), "k", &[(&lamp, 1)])).await.unwrap_err();
    let took = started.elapsed();
    println!("create against a hung articles answered {:?} in {took:?} (deadline {deadline:?})", err.code());
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(took < deadline * 3, "bounded by the client deadline, took {took:?}");
    assert_eq!(mesh.stock(&lamp).await, 10);
}
