//! The business gateway keeps answering reads when a service is out: the last answer, marked
//! degraded; public reads come from the response cache while fresh; the dashboard always answers.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_tests::wait_until;
use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{ADMIN_EMAIL, Answer, Setup, TestMesh};

/// Response cache TTL of these meshes: short, so a test can outlive it.
const CACHE_TTL: Duration = Duration::from_secs(2);

async fn start() -> TestMesh {
    TestMesh::start_customised(Setup::default(), |opts, _| {
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| cfg.response_cache_ttl = CACHE_TTL);
    })
    .await
}

async fn stop_all(t: &mut TestMesh, kind: Kind) {
    let started = Instant::now();
    for replica in 1..=2 {
        t.mesh.get_mut(kind, replica).stop().await.unwrap();
    }
    println!("stopped both {} replicas in {:?}", kind.name(), started.elapsed());
}

fn assert_degraded(answer: &Answer, what: &str) {
    assert_eq!(answer.status, StatusCode::OK, "{what}: {:?}", answer.body);
    assert_eq!(answer.header("x-mesh-fallback"), "degraded", "{what}");
    assert_eq!(answer.body["degraded"], true, "{what}: {:?}", answer.body);
    let cache_status = answer.header("cache-status");
    assert!(cache_status.contains("fwd=stale") && cache_status.contains("stale-if-error"), "{cache_status}");
    println!("{what}: 200 degraded, Age {}, Cache-Status {cache_status}", answer.header("age"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_reads_degrade_when_their_service_is_down() {
    let mut t = start().await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let (_, token, _) = t.user("gil@example.com").await;
    let (_, other, _) = t.user("hal@example.com").await;
    let article = t.article(&admin, "Green teapot", 1800, 7).await;

    // The response cache: a miss stores, the same read within the TTL is a hit.
    let list = "/v1/articles?q=teapot";
    let miss = t.call(Method::GET, list, Some(&token), None).await;
    let stored_at = Instant::now();
    assert_eq!(miss.status, StatusCode::OK, "{:?}", miss.body);
    assert_eq!(miss.body["articles"][0]["id"], article.as_str());
    assert_eq!(miss.header("cache-status"), "mesh-gateway; fwd=uri-miss; stored");
    let hit = t.call(Method::GET, list, Some(&other), None).await;
    println!(
        "second read {:?} after the first: Cache-Status {}, Age {}",
        stored_at.elapsed(),
        hit.header("cache-status"),
        hit.header("age")
    );
    assert!(hit.header("cache-status").starts_with("mesh-gateway; hit"), "{}", hit.header("cache-status"));
    assert_eq!(hit.body, miss.body, "the public catalogue is shared across principals");
    assert_eq!(hit.header("x-mesh-fallback"), "", "a cache hit is not a fallback");
    let one = t.call(Method::GET, &format!("/v1/articles/{article}"), Some(&token), None).await;
    assert_eq!(one.status, StatusCode::OK);
    let last_stored = Instant::now();
    // Analytics summaries are private: remembered per owner, never from the response cache.
    let event =
        t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(json!({"type": "page.view"}))).await;
    assert_eq!(event.status, StatusCode::ACCEPTED, "{:?}", event.body);
    let summary = t.call(Method::GET, "/v1/analytics/summary?window=1h", Some(&token), None).await;
    assert_eq!(summary.status, StatusCode::OK);
    assert_eq!(summary.header("cache-status"), "");
    assert_eq!(summary.body["total"], 1);

    stop_all(&mut t, Kind::Articles).await;
    stop_all(&mut t, Kind::Analytics).await;
    // Past the cache TTL, the service is asked, fails, and the snapshot answers degraded.
    assert!(wait_until(Duration::from_secs(5), || async move { last_stored.elapsed() > CACHE_TTL }).await);
    let degraded = t.call(Method::GET, list, Some(&token), None).await;
    assert_degraded(&degraded, "GET /v1/articles?q=teapot, articles down");
    assert_eq!(degraded.body["articles"], miss.body["articles"]);
    assert!(degraded.header("age").parse::<u64>().unwrap() >= CACHE_TTL.as_secs());
    let one = t.call(Method::GET, &format!("/v1/articles/{article}"), Some(&other), None).await;
    assert_degraded(&one, "GET /v1/articles/{id}, articles down");
    assert_eq!(one.body["title"], "Green teapot");

    let started = Instant::now();
    let never = t.call(Method::GET, "/v1/articles?q=never-asked", Some(&token), None).await;
    never.assert_problem(503);
    println!(
        "a list never read: 503 in {:?}, Retry-After {}",
        started.elapsed(),
        never.header("retry-after")
    );
    assert!(!never.header("retry-after").is_empty());

    let summary = t.call(Method::GET, "/v1/analytics/summary?window=1h", Some(&token), None).await;
    assert_degraded(&summary, "GET /v1/analytics/summary, analytics down");
    assert_eq!(summary.body["total"], 1);
    let not_theirs = t.call(Method::GET, "/v1/analytics/summary?window=1h", Some(&other), None).await;
    not_theirs.assert_problem(503);
    assert!(!not_theirs.header("retry-after").is_empty());
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_returns_partial_results() {
    let mut t = start().await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let (_, token, _) = t.user("ivy@example.com").await;
    let (_, newcomer, _) = t.user("jon@example.com").await;
    let article = t.article(&admin, "Cup", 300, 10).await;
    let order = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"article_id": article, "quantity": 1}]})),
            &[("idempotency-key", "dash-1")],
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let event =
        t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(json!({"type": "click"}))).await;
    assert_eq!(event.status, StatusCode::ACCEPTED);
    let whole = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    for section in ["recent_orders", "articles", "activity"] {
        assert_eq!(whole.body[section]["status"], "ok", "{section}: {:?}", whole.body);
    }
    assert_eq!(whole.header("x-mesh-fallback"), "");

    let status = |a: &Answer| {
        ["recent_orders", "articles", "activity"]
            .map(|s| a.body[s]["status"].as_str().unwrap_or("?").to_owned())
    };
    stop_all(&mut t, Kind::Analytics).await;
    let one_down = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    let fresh_one_down = t.call(Method::GET, "/v1/dashboard", Some(&newcomer), None).await;
    println!("analytics down: {:?}; for a newcomer: {:?}", status(&one_down), status(&fresh_one_down));
    assert_eq!(one_down.status, StatusCode::OK);
    assert_eq!(status(&one_down), ["ok", "ok", "degraded"]);
    assert_eq!(one_down.body["activity"]["data"]["total"], 1, "the owner's own last summary");
    assert_eq!(one_down.header("x-mesh-fallback"), "degraded");
    assert_eq!(fresh_one_down.status, StatusCode::OK);
    assert_eq!(status(&fresh_one_down), ["ok", "ok", "unavailable"], "never another owner's activity");

    stop_all(&mut t, Kind::Articles).await;
    let two_down = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    let fresh_two_down = t.call(Method::GET, "/v1/dashboard", Some(&newcomer), None).await;
    println!(
        "analytics and articles down: {:?}; for a newcomer: {:?}",
        status(&two_down),
        status(&fresh_two_down)
    );
    assert_eq!(status(&two_down), ["ok", "degraded", "degraded"]);
    assert_eq!(two_down.body["articles"]["data"][0]["id"], article.as_str());
    assert_eq!(two_down.body["recent_orders"]["data"][0]["id"], order.body["id"]);
    // The catalogue is public, so the newcomer gets the same articles.
    assert_eq!(status(&fresh_two_down), ["ok", "degraded", "unavailable"]);

    stop_all(&mut t, Kind::Orders).await;
    let started = Instant::now();
    let all_down = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    let took = started.elapsed();
    let fresh_all_down = t.call(Method::GET, "/v1/dashboard", Some(&newcomer), None).await;
    println!(
        "all three down: {} in {took:?} {:?} (Age {}); for a newcomer: {} {:?}",
        all_down.status,
        status(&all_down),
        all_down.header("age"),
        fresh_all_down.status,
        status(&fresh_all_down)
    );
    assert_eq!(all_down.status, StatusCode::OK);
    assert_eq!(status(&all_down), ["degraded", "degraded", "degraded"]);
    assert_eq!(fresh_all_down.status, StatusCode::OK);
    // The newcomer's (empty) orders were remembered by their earlier dashboards.
    assert_eq!(status(&fresh_all_down), ["degraded", "degraded", "unavailable"]);
    assert_eq!(fresh_all_down.header("x-mesh-fallback"), "degraded");
    t.mesh.stop().await.unwrap();
}
