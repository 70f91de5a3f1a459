//! Order status events (`GET /v1/orders/{id}/events`): server-sent events of what became of one
//! of your orders, through an outage of the orders service, and for nobody else.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::sse::{SseEvent, SseStream};
use support::{ADMIN_EMAIL, TestMesh};

fn data(event: &SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {event:?}"))
}

fn events_path(id: &str) -> String {
    format!("/v1/orders/{id}/events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_order_streams_queued_then_created_once_the_orders_replicas_are_back() {
    let mut t = TestMesh::start().await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let (_, token, _) = t.user("events@example.com").await;
    let (_, other, _) = t.user("events-nosy@example.com").await;
    let article = t.article(&admin, "Watched kettle", 100, 10).await;

    for replica in 1..=2 {
        t.mesh.get_mut(Kind::Orders, replica).stop().await.unwrap();
    }
    let body = json!({"items": [{"article_id": article, "quantity": 1}]});
    let queued = t
        .call_with(Method::POST, "/v1/orders", Some(&token), Some(body), &[("idempotency-key", "watched")])
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
    let id = queued.body["id"].as_str().unwrap().to_owned();

    let recovered = Instant::now();
    for replica in 1..=2 {
        t.mesh.restart(Kind::Orders, replica).await.unwrap();
    }
    // The queue consumer creates it, and the gateways reach the replicas again on their own.
    let path = format!("/v1/orders/{id}");
    let created = mesh_tests::wait_until(Duration::from_secs(30), || async {
        let order = t.call(Method::GET, &path, Some(&token), None).await;
        order.status == StatusCode::OK && order.header("x-mesh-fallback").is_empty()
    })
    .await;
    assert!(created, "the queued order was not created within 30s of recovery");
    let time_to_create = recovered.elapsed();

    let mut stream = SseStream::open(&t.base, &events_path(&id), &token, &[]).await;
    let first = stream.next(Duration::from_secs(5)).await.expect("the queued event");
    let second = stream.next(Duration::from_secs(5)).await.expect("the created event");
    let statuses = [first.event.as_str(), second.event.as_str()];
    assert_eq!(statuses, ["queued", "created"], "{first:?} {second:?}");
    for event in [&first, &second] {
        let got = data(event);
        assert_eq!(
            (got["order_id"].as_str(), got["status"].as_str()),
            (Some(id.as_str()), Some(&*event.event))
        );
        assert!(got["at"].as_i64().unwrap() > 0, "{got}");
    }
    assert_eq!(stream.next(Duration::from_millis(300)).await, None, "nothing more happened to it");

    // Resuming after the first event gives the second only.
    let mut resumed =
        SseStream::open(&t.base, &events_path(&id), &token, &[("last-event-id", first.id.as_str())]).await;
    assert_eq!(resumed.next(Duration::from_secs(5)).await.map(|e| e.id), Some(second.id.clone()));
    assert_eq!(resumed.next(Duration::from_millis(300)).await, None);

    // Nobody else sees it.
    t.call(Method::GET, &events_path(&id), Some(&other), None).await.assert_problem(404);
    println!(
        "queued order {id}: events {statuses:?}, created and reachable {time_to_create:?} after the \
         orders replicas restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_users_order_events_are_404_and_the_owner_sees_created() {
    let t = TestMesh::start().await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let (_, token, _) = t.user("events-owner@example.com").await;
    let (_, other, _) = t.user("events-other@example.com").await;
    let article = t.article(&admin, "Private kettle", 100, 10).await;
    let body = json!({"items": [{"article_id": article, "quantity": 1}]});
    let order = t
        .call_with(Method::POST, "/v1/orders", Some(&token), Some(body), &[("idempotency-key", "mine")])
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let id = order.body["id"].as_str().unwrap().to_owned();

    let mut mine = SseStream::open(&t.base, &events_path(&id), &token, &[]).await;
    let created = mine.next(Duration::from_secs(5)).await.expect("the created event");
    assert_eq!(created.event, "created");
    assert_eq!(data(&created)["order_id"], id.as_str());

    let theirs = t.call(Method::GET, &events_path(&id), Some(&other), None).await;
    theirs.assert_problem(404);
    let unknown = t.call(Method::GET, &events_path(&mesh_core::ids::new_id()), Some(&token), None).await;
    unknown.assert_problem(404);
    let bad = SseStream::request(&t.base, &events_path(&id), &token, &[("last-event-id", "nope")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    println!("another user's order events: {} {}", theirs.status, theirs.body);
}
