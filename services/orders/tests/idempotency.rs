//! Idempotent order creation over real gRPC: two orders replicas and two articles replicas on one
//! Redis.

mod support;

use mesh_core::ids::new_id;
use mesh_proto::orders::{CreateOrderRequest, ListOrdersRequest};
use support::{Mesh, order};
use tonic::Code;

fn list_all(owner_id: &str) -> ListOrdersRequest {
    ListOrdersRequest { owner_id: owner_id.into(), limit: 100, cursor: String::new() }
}

#[tokio::test]
async fn the_same_idempotency_key_creates_one_order() {
    const KEYS: usize = 5;
    const SENDS: usize = 3;
    let mut mesh = Mesh::start(2, 2).await;
    let lamp = mesh.article(2_500, 100).await;
    let bulb = mesh.article(300, 100).await;
    let owner = new_id();

    let mut ids = Vec::new();
    for k in 0..KEYS {
        // The same request sent concurrently, spread over both orders replicas.
        let req = order(&owner, &format!("key-{k}"), &[(&lamp, 2), (&bulb, 1)]);
        let mut tasks = Vec::new();
        for send in 0..SENDS {
            let mut client = mesh.clients[send % 2].clone();
            let req = req.clone();
            tasks.push(tokio::spawn(async move { client.create_order(req).await.unwrap().into_inner() }));
        }
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(task.await.unwrap());
        }
        assert!(
            answers.iter().all(|a| *a == answers[0]),
            "key-{k}: every send answers one order: {answers:?}"
        );
        let created = &answers[0];
        assert_eq!((created.status.as_str(), created.total_cents), ("created", 2 * 2_500 + 300));
        assert_eq!(created.idempotency_key, format!("key-{k}"));
        // Once more, later and with the items listed the other way round: still the same order.
        let again = order(&owner, &format!("key-{k}"), &[(&bulb, 1), (&lamp, 2)]);
        assert_eq!(mesh.clients[1].create_order(again).await.unwrap().into_inner(), *created);
        ids.push(created.id.clone());
    }

    let listed = mesh.clients[0].list_orders(list_all(&owner)).await.unwrap().into_inner().orders;
    let (lamps, bulbs) = (mesh.stock(&lamp).await, mesh.stock(&bulb).await);
    println!(
        "{KEYS} keys x {} sends over 2 orders replicas: {} orders, stock 100+100 -> {lamps}+{bulbs}",
        SENDS + 1,
        listed.len()
    );
    assert_eq!(listed.len(), KEYS);
    ids.sort();
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), KEYS, "one order per key");
    assert_eq!((lamps, bulbs), (100 - 2 * KEYS as i64, 100 - KEYS as i64), "stock taken once per key");
}

#[tokio::test]
async fn reusing_a_key_with_different_items_is_already_exists() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(2_500, 10).await;
    let owner = new_id();
    let first = mesh.clients[0].create_order(order(&owner, "k", &[(&lamp, 1)])).await.unwrap().into_inner();

    let err = mesh.clients[0].create_order(order(&owner, "k", &[(&lamp, 2)])).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "Idempotency-Key already used with a different request");
    assert_eq!(mesh.stock(&lamp).await, 9, "the refused request took nothing");

    // Keys belong to their owner: another owner may use the same key for other items.
    let other =
        mesh.clients[0].create_order(order(&new_id(), "k", &[(&lamp, 2)])).await.unwrap().into_inner();
    assert_ne!(other.id, first.id);
    assert_eq!(mesh.stock(&lamp).await, 7);
}

#[tokio::test]
async fn insufficient_stock_is_failed_precondition_and_frees_the_key() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(2_500, 2).await;
    let bulb = mesh.article(300, 10).await;
    let owner = new_id();

    let err = mesh.clients[0].create_order(order(&owner, "k", &[(&bulb, 1), (&lamp, 3)])).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), format!("article {lamp} has only 2 in stock"));
    assert_eq!((mesh.stock(&lamp).await, mesh.stock(&bulb).await), (2, 10), "nothing taken");

    let unknown = new_id();
    let err = mesh.clients[0].create_order(order(&owner, "k", &[(&unknown, 1)])).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "the key was free again for another request");
    assert!(err.message().contains(&unknown), "{}", err.message());

    // Fixed, the same key goes through.
    let created = mesh.clients[0].create_order(order(&owner, "k", &[(&bulb, 1), (&lamp, 2)])).await.unwrap();
    assert_eq!(created.into_inner().total_cents, 300 + 2 * 2_500);
    assert_eq!((mesh.stock(&lamp).await, mesh.stock(&bulb).await), (0, 9));
    let listed = mesh.clients[0].list_orders(list_all(&owner)).await.unwrap().into_inner().orders;
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn bad_order_requests_are_invalid_argument_and_store_nothing() {
    let mut mesh = Mesh::start(1, 1).await;
    let lamp = mesh.article(2_500, 10).await;
    let owner = new_id();
    let good = || order(&owner, "k", &[(&lamp, 1)]);
    let cases = [
        ("owner_id", CreateOrderRequest { owner_id: "alice".into(), ..good() }),
        ("idempotency_key", CreateOrderRequest { idempotency_key: String::new(), ..good() }),
        ("idempotency_key", CreateOrderRequest { idempotency_key: "k".repeat(129), ..good() }),
        ("idempotency_key", CreateOrderRequest { idempotency_key: "line\nbreak".into(), ..good() }),
        ("items", order(&owner, "k", &[])),
        ("items", order(&owner, "k", &vec![(lamp.as_str(), 1); 51])),
        ("items[0].quantity", order(&owner, "k", &[(&lamp, 0)])),
        ("items[0].quantity", order(&owner, "k", &[(&lamp, 1001)])),
        ("items[0].article_id", order(&owner, "k", &[("lamp", 1)])),
    ];
    for (field, req) in cases {
        let err = mesh.clients[0].create_order(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "names {field}: {}", err.message());
    }
    assert_eq!(mesh.stock(&lamp).await, 10);
    let listed = mesh.clients[0].list_orders(list_all(&owner)).await.unwrap().into_inner().orders;
    assert!(listed.is_empty());
    // None of the refused requests claimed the key.
    assert!(mesh.clients[0].create_order(order(&owner, "k", &[(&lamp, 3)])).await.is_ok());
}
