//! Orders accepted while every orders replica is down are queued durably (202) and created
//! exactly once each when the replicas come back.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::store::{Store, StoreConfig};
use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN_EMAIL, Answer, Setup, TestMesh};

const SENT: usize = 200;
const REPLAYED: usize = 50;
const QUANTITY: i64 = 2;
const STOCK: i64 = 10_000;
/// The stream the business gateways append to and the orders service drains.
const QUEUE: &str = "orders:queue";

fn order_body(article: &str) -> Value {
    json!({"items": [{"article_id": article, "quantity": QUANTITY}]})
}

/// POSTs one order with `key`, through the router.
async fn post(t: &TestMesh, token: &str, article: &str, key: &str) -> Answer {
    t.call_with(
        Method::POST,
        "/v1/orders",
        Some(token),
        Some(order_body(article)),
        &[("idempotency-key", key)],
    )
    .await
}

/// Sends every key, `concurrency` at a time; the answers in key order.
async fn post_all(t: &Arc<TestMesh>, token: &str, article: &str, keys: &[String]) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(16) {
        let mut tasks = Vec::new();
        for key in chunk {
            let (t, token, article, key) = (t.clone(), token.to_owned(), article.to_owned(), key.clone());
            tasks.push(tokio::spawn(async move { post(&t, &token, &article, &key).await }));
        }
        for task in tasks {
            answers.push(task.await.unwrap());
        }
    }
    answers
}

/// Every order of the caller, following `next_cursor`.
async fn list_all(t: &TestMesh, token: &str) -> Vec<Value> {
    let mut orders = Vec::new();
    let mut path = "/v1/orders?limit=100".to_owned();
    loop {
        let page = t.call(Method::GET, &path, Some(token), None).await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        assert_eq!(page.header("x-mesh-fallback"), "", "a live list");
        orders.extend(page.body["orders"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/orders?limit=100&cursor={cursor}"),
            None => return orders,
        }
    }
}

async fn stock(t: &TestMesh, token: &str, article: &str) -> i64 {
    let answer = t.call(Method::GET, &format!("/v1/articles/{article}"), Some(token), None).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer.body["stock"].as_i64().unwrap()
}

fn assert_queued(answer: &Answer, what: &str) -> String {
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{what}: {:?}", answer.body);
    assert_eq!(answer.body["status"], "queued", "{what}");
    assert_eq!(answer.header("x-mesh-fallback"), "queued", "{what}");
    let id = answer.body["id"].as_str().unwrap().to_owned();
    assert!(mesh_core::ids::is_id(&id), "{what}: {id}");
    assert_eq!(answer.header("location"), format!("/v1/orders/{id}"), "{what}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_accepted_during_an_outage_are_created_exactly_once_after_recovery() {
    let mut store_cfg = None;
    let mut t = TestMesh::start_customised(Setup::default(), |opts, _| {
        store_cfg = Some(opts.store.clone());
        // All of this test's traffic comes from one address.
        opts.configure_router = Arc::new(|cfg: &mut gateway_router::Config| cfg.limits.per_client_rps = 0);
        // Stock is read through the gateway: live, not from the response cache.
        opts.configure_gateway =
            Arc::new(|cfg: &mut gateway::Config| cfg.response_cache_ttl = Duration::ZERO);
    })
    .await;
    let store_cfg: StoreConfig = store_cfg.unwrap();
    let queue = Store::connect(&store_cfg).await.unwrap();
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let (_, token, _) = t.user("queue@example.com").await;
    let (_, other, _) = t.user("nosy@example.com").await;
    let article = t.article(&admin, "Queued kettle", 100, STOCK).await;

    // Before the outage: one order, and the first page of the list (remembered by the gateway).
    let before = post(&t, &token, &article, "before").await;
    assert_eq!(before.status, StatusCode::CREATED, "{:?}", before.body);
    let first_page = t.call(Method::GET, "/v1/orders?limit=100", Some(&token), None).await;
    assert_eq!(first_page.body["orders"].as_array().unwrap().len(), 1);

    for replica in 1..=2 {
        t.mesh.get_mut(Kind::Orders, replica).stop().await.unwrap();
    }

    // A body the orders service would refuse is refused now, not queued.
    let bad = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"article_id": article, "quantity": 0}]})),
            &[("idempotency-key", "bad")],
        )
        .await;
    bad.assert_problem(400);
    let unknown_shape = post(&t, &token, "not-an-id", "bad-id").await;
    unknown_shape.assert_problem(400);
    let no_key = t.call(Method::POST, "/v1/orders", Some(&token), Some(order_body(&article))).await;
    no_key.assert_problem(400);

    // The outage: every order is accepted into the queue, each key with an id of its own.
    let t = Arc::new(t);
    let keys: Vec<String> = (0..SENT).map(|i| format!("outage-{i}")).collect();
    let started = Instant::now();
    let answers = post_all(&t, &token, &article, &keys).await;
    let took = started.elapsed();
    let ids: Vec<String> = answers.iter().zip(&keys).map(|(a, key)| assert_queued(a, key)).collect();
    let by_key: HashMap<&String, &String> = keys.iter().zip(&ids).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), SENT, "one id per key");
    // Replays of a quarter of the keys: the same id, nothing appended twice.
    let replays = post_all(&t, &token, &article, &keys[..REPLAYED]).await;
    for (answer, key) in replays.iter().zip(&keys) {
        assert_eq!(&assert_queued(answer, key), by_key[key], "{key}: a replay keeps its id");
    }
    let queued_entries = queue.stream_len(QUEUE).await.unwrap();
    assert_eq!(queued_entries, SENT as u64, "one entry per key");
    // The same key with other items is refused, as the orders service would.
    let reused = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"article_id": article, "quantity": 5}]})),
            &[("idempotency-key", keys[0].as_str())],
        )
        .await;
    reused.assert_problem(409);

    // Reads while down: a queued order shows as queued to its owner only; the list is the last
    // one seen, degraded; a page never seen is 503.
    for id in ids.iter().step_by(20) {
        let shown = t.call(Method::GET, &format!("/v1/orders/{id}"), Some(&token), None).await;
        assert_eq!(shown.status, StatusCode::OK, "{:?}", shown.body);
        assert_eq!(
            (shown.body["id"].as_str(), shown.body["status"].as_str()),
            (Some(id.as_str()), Some("queued"))
        );
        assert_eq!(shown.header("x-mesh-fallback"), "queued");
        assert_eq!(shown.body["items"][0]["quantity"], QUANTITY);
        let theirs = t.call(Method::GET, &format!("/v1/orders/{id}"), Some(&other), None).await;
        assert!(
            theirs.status.is_server_error() || theirs.status == StatusCode::NOT_FOUND,
            "{:?}",
            theirs.body
        );
        assert_ne!(theirs.body["status"], "queued", "never another owner's queued order");
    }
    let degraded = t.call(Method::GET, "/v1/orders?limit=100", Some(&token), None).await;
    assert_eq!(degraded.status, StatusCode::OK, "{:?}", degraded.body);
    assert_eq!(degraded.header("x-mesh-fallback"), "degraded");
    assert_eq!(degraded.body["degraded"], true);
    assert_eq!(degraded.body["orders"], first_page.body["orders"]);
    let never = t.call(Method::GET, "/v1/orders?limit=7", Some(&token), None).await;
    never.assert_problem(503);
    assert!(!never.header("retry-after").is_empty());
    assert_eq!(stock(&t, &token, &article).await, STOCK - QUANTITY, "nothing taken while queued");

    // Recovery.
    let mut t = Arc::into_inner(t).unwrap();
    let recovered = Instant::now();
    for replica in 1..=2 {
        t.mesh.restart(Kind::Orders, replica).await.unwrap();
    }
    let drained = mesh_tests::wait_until(Duration::from_secs(60), || {
        let queue = queue.clone();
        async move { queue.stream_len(QUEUE).await.unwrap() == 0 }
    })
    .await;
    let drain_time = recovered.elapsed();
    assert!(drained, "the queue was not drained within 60s of recovery");
    // Every business gateway finds the replicas again on its own (health watches).
    let gateways: Vec<String> =
        (1..=2).map(|r| format!("http://{}", t.mesh.get(Kind::BusinessGateway, r).addr)).collect();
    let live = mesh_tests::wait_until(Duration::from_secs(30), || async {
        for base in &gateways {
            let page = t.call_at(base, Method::GET, "/v1/orders?limit=1", Some(&token), None, &[]).await;
            if page.status != StatusCode::OK || !page.header("x-mesh-fallback").is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    let reachable_after = recovered.elapsed();
    assert!(live, "the gateways did not reach the restarted orders replicas");

    let orders = list_all(&t, &token).await;
    let listed: Vec<&str> = orders.iter().map(|o| o["id"].as_str().unwrap()).collect();
    let unique: HashSet<&str> = listed.iter().copied().collect();
    assert_eq!((listed.len(), unique.len()), (SENT + 1, SENT + 1), "exactly one order per key");
    for id in &ids {
        assert!(unique.contains(id.as_str()), "queued order {id} was never created");
    }
    assert!(unique.contains(before.body["id"].as_str().unwrap()));
    assert!(orders.iter().all(|o| o["status"] == "created" && o["total_cents"] == 100 * QUANTITY));
    for id in ids.iter().step_by(10) {
        let shown = t.call(Method::GET, &format!("/v1/orders/{id}"), Some(&token), None).await;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(
            (shown.body["id"].as_str(), shown.body["status"].as_str()),
            (Some(id.as_str()), Some("created"))
        );
        assert_eq!(shown.header("x-mesh-fallback"), "", "live again");
    }
    let left = stock(&t, &token, &article).await;
    assert_eq!(left, STOCK - QUANTITY * (SENT as i64 + 1), "stock taken exactly once per order");

    // A client retrying after recovery gets the order its 202 named.
    let retried = post(&t, &token, &article, &keys[7]).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{:?}", retried.body);
    assert_eq!(retried.body["id"].as_str(), Some(ids[7].as_str()));
    assert_eq!(list_all(&t, &token).await.len(), SENT + 1);

    println!(
        "sent {SENT} orders during the outage in {took:?}: {SENT} answered 202 queued ({} entries), \
         {REPLAYED} replays answered their first id; queue drained {drain_time:?} after the orders \
         replicas came back (gateways reached them after {reachable_after:?}); {} orders exist, \
         stock {STOCK} -> {left}",
        queued_entries,
        listed.len()
    );
    t.mesh.stop().await.unwrap();
}
