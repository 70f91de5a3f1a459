//! With two replicas of everything, stopping one replica of each service leaves every route
//! answering through the other.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{ADMIN_EMAIL, TestMesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_replica_of_each_service_keeps_every_route_answering() {
    let mut t = TestMesh::start().await;
    let (_, token, _) = t.user("replicas@example.com").await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let article = t.article(&admin, "Cup", 300, 1000).await;

    for kind in Kind::SERVICES {
        t.mesh.get_mut(kind, 1).stop().await.unwrap();
    }
    let started = Instant::now();
    let mut sent = 0;
    let mut failed = Vec::new();
    // Every route, several times, so the balancers get many chances to pick a stopped replica.
    for round in 0..10 {
        let key = format!("after-stop-{round}");
        let calls = [
            t.call(Method::GET, "/v1/users/me", Some(&token), None).await,
            t.call(Method::GET, "/v1/quota", Some(&token), None).await,
            t.call(Method::GET, "/v1/articles", Some(&token), None).await,
            t.call_with(
                Method::POST,
                "/v1/orders",
                Some(&token),
                Some(json!({"items": [{"article_id": article, "quantity": 1}]})),
                &[("idempotency-key", key.as_str())],
            )
            .await,
            t.call(Method::GET, "/v1/orders", Some(&token), None).await,
            t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(json!({"type": "click"}))).await,
            t.call(Method::GET, "/v1/dashboard", Some(&token), None).await,
        ];
        for answer in calls {
            sent += 1;
            if !answer.status.is_success() {
                failed.push((answer.status, answer.body));
            }
        }
    }
    let login = t.login("replicas@example.com").await;
    assert_eq!(login.status, StatusCode::OK);
    println!(
        "{sent} requests after stopping one replica of each service: {} failed, {:?}",
        failed.len(),
        started.elapsed()
    );
    assert!(failed.is_empty(), "{failed:?}");
    let orders = t.call(Method::GET, "/v1/orders?limit=100", Some(&token), None).await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 10);
    assert!(started.elapsed() < Duration::from_secs(30));
    t.mesh.stop().await.unwrap();
}
