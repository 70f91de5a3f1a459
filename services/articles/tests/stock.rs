//! Reserving and releasing stock over real gRPC, on a Redis shared by two replicas.

mod support;

use std::sync::Arc;

use mesh_proto::articles::{ReleaseStockRequest, ReserveStockRequest};
use mesh_tests::RedisServer;
use support::{Client, config, create, line, redis_store, replica, reservation, stock_of};
use tonic::Code;

async fn two_replicas(redis: &RedisServer) -> ([mesh_tests::Component; 2], [Client; 2]) {
    let store = redis_store(redis);
    let (a, client_a) = replica(config(store.clone())).await;
    let (b, client_b) = replica(config(store)).await;
    ([a, b], [client_a, client_b])
}

fn release(id: &str) -> ReleaseStockRequest {
    ReleaseStockRequest { reservation_id: id.into() }
}

#[tokio::test]
async fn a_reservation_takes_every_line_or_none() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut client, _]) = two_replicas(&redis).await;
    let lamp = create(&mut client, "Lamp", "", 2_500, 5).await.id;
    let desk = create(&mut client, "Desk", "", 20_000, 2).await.id;

    let short = client.reserve_stock(reservation(vec![line(&lamp, 3), line(&desk, 3)])).await.unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(short.message(), format!("article {desk} has only 2 in stock"));
    assert_eq!(
        (stock_of(&mut client, &lamp).await, stock_of(&mut client, &desk).await),
        (5, 2),
        "nothing taken"
    );

    let unknown = mesh_core::ids::new_id();
    let missing =
        client.reserve_stock(reservation(vec![line(&lamp, 1), line(&unknown, 1)])).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains(&unknown), "names the article: {}", missing.message());
    assert_eq!(stock_of(&mut client, &lamp).await, 5);

    let ok =
        client.reserve_stock(reservation(vec![line(&lamp, 3), line(&desk, 2)])).await.unwrap().into_inner();
    let lines: Vec<_> =
        ok.lines.iter().map(|l| (l.article_id.as_str(), l.quantity, l.unit_price_cents)).collect();
    assert_eq!(lines, [(lamp.as_str(), 3, 2_500), (desk.as_str(), 2, 20_000)]);
    assert_eq!((stock_of(&mut client, &lamp).await, stock_of(&mut client, &desk).await), (2, 0));
}

#[tokio::test]
async fn repeating_a_reservation_id_takes_stock_once() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut a, mut b]) = two_replicas(&redis).await;
    let lamp = create(&mut a, "Lamp", "", 2_500, 10).await.id;
    let req = reservation(vec![line(&lamp, 4)]);

    let first = a.reserve_stock(req.clone()).await.unwrap().into_inner();
    let again = b.reserve_stock(req.clone()).await.unwrap().into_inner();
    assert_eq!(first, again);
    assert_eq!(stock_of(&mut a, &lamp).await, 6, "taken once");
    // Same id, other lines: the reservation is what it was, nothing more is taken.
    let other = ReserveStockRequest { lines: vec![line(&lamp, 1)], ..req };
    assert_eq!(b.reserve_stock(other).await.unwrap().into_inner(), first);
    assert_eq!(stock_of(&mut a, &lamp).await, 6);
}

#[tokio::test]
async fn concurrent_reservations_on_two_replicas_never_oversell() {
    const STOCK: i64 = 10;
    const CALLS: usize = 40;
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut a, b]) = two_replicas(&redis).await;
    let lamp = create(&mut a, "Lamp", "", 2_500, STOCK).await.id;
    let clients = Arc::new([a.clone(), b]);

    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let mut client = clients[i % 2].clone();
        let req = reservation(vec![line(&lamp, 1)]);
        tasks.push(tokio::spawn(async move { client.reserve_stock(req).await.map_err(|e| e.code()) }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(code) => assert_eq!(code, Code::FailedPrecondition),
        }
    }
    println!("{CALLS} concurrent reservations over two replicas, stock {STOCK}: {succeeded} succeeded");
    assert_eq!(succeeded, STOCK as usize);
    assert_eq!(stock_of(&mut a, &lamp).await, 0);
}

#[tokio::test]
async fn concurrent_two_line_reservations_are_all_or_nothing() {
    const CALLS: usize = 30;
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut a, b]) = two_replicas(&redis).await;
    let lamp = create(&mut a, "Lamp", "", 2_500, 10).await.id;
    let bulb = create(&mut a, "Bulb", "", 300, 5).await.id;
    let clients = Arc::new([a.clone(), b]);

    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let mut client = clients[i % 2].clone();
        let req = reservation(vec![line(&lamp, 1), line(&bulb, 1)]);
        tasks.push(tokio::spawn(async move { client.reserve_stock(req).await.map_err(|e| e.code()) }));
    }
    let mut succeeded = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(code) => assert_eq!(code, Code::FailedPrecondition),
        }
    }
    let (lamps, bulbs) = (stock_of(&mut a, &lamp).await, stock_of(&mut a, &bulb).await);
    println!(
        "{CALLS} concurrent lamp+bulb reservations, stock 10+5: {succeeded} succeeded, left {lamps}+{bulbs}"
    );
    assert_eq!(succeeded, 5);
    assert_eq!((lamps, bulbs), (5, 0), "refused reservations gave their lamps back");
}

#[tokio::test]
async fn a_reservation_is_released_exactly_once() {
    const RELEASES: usize = 10;
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut a, b]) = two_replicas(&redis).await;
    let lamp = create(&mut a, "Lamp", "", 2_500, 10).await.id;
    let req = reservation(vec![line(&lamp, 3)]);
    a.reserve_stock(req.clone()).await.unwrap();
    assert_eq!(stock_of(&mut a, &lamp).await, 7);

    let clients = Arc::new([a.clone(), b]);
    let mut tasks = Vec::new();
    for i in 0..RELEASES {
        let mut client = clients[i % 2].clone();
        let id = req.reservation_id.clone();
        tasks.push(tokio::spawn(
            async move { client.release_stock(release(&id)).await.unwrap().into_inner() },
        ));
    }
    let mut released = 0;
    for task in tasks {
        released += usize::from(task.await.unwrap().released);
    }
    println!("{RELEASES} concurrent releases of one reservation: {released} released");
    assert_eq!(released, 1);
    assert_eq!(stock_of(&mut a, &lamp).await, 10, "given back once");

    // Released stays released: a repeat reservation does not take the stock again.
    let again = a.reserve_stock(req).await.unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(stock_of(&mut a, &lamp).await, 10);
    let unknown = a.release_stock(release(&mesh_core::ids::new_id())).await.unwrap().into_inner();
    assert!(!unknown.released);
}

#[tokio::test]
async fn bad_reservations_are_invalid_argument_and_take_nothing() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut client, _]) = two_replicas(&redis).await;
    let lamp = create(&mut client, "Lamp", "", 2_500, 10).await.id;
    let cases = [
        ("reservation_id", ReserveStockRequest { reservation_id: "r-1".into(), lines: vec![line(&lamp, 1)] }),
        ("lines", reservation(vec![])),
        ("lines", reservation(vec![line(&lamp, 1); 51])),
        ("lines[0].quantity", reservation(vec![line(&lamp, 0)])),
        ("lines[0].quantity", reservation(vec![line(&lamp, 1001)])),
        ("lines[0].article_id", reservation(vec![line("lamp", 1)])),
    ];
    for (field, req) in cases {
        let err = client.reserve_stock(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "names {field}: {}", err.message());
    }
    let err = client.release_stock(release("nope")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(stock_of(&mut client, &lamp).await, 10);
}

#[tokio::test]
async fn an_article_on_two_lines_takes_both_or_neither() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, [mut client, _]) = two_replicas(&redis).await;
    let lamp = create(&mut client, "Lamp", "", 2_500, 10).await.id;
    client.reserve_stock(reservation(vec![line(&lamp, 3), line(&lamp, 4)])).await.unwrap();
    assert_eq!(stock_of(&mut client, &lamp).await, 3);
    // More than is left, over two lines of which the first fits: nothing is taken.
    let err = client.reserve_stock(reservation(vec![line(&lamp, 2), line(&lamp, 2)])).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(stock_of(&mut client, &lamp).await, 3);
}
