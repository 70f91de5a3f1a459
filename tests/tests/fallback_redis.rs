//! The gateways' Redis (API key cache, snapshots, response cache) failing is a miss, never an
//! error: reads the services can answer keep answering, and caching comes back with Redis.
//!
//! The services keep their state in an in-process memory store here, so killing Redis takes
//! down only the gateways' cache tier, not the services.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_core::store::StoreConfig;
use mesh_tests::unique_prefix;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{ADMIN_EMAIL, Answer, Setup, TestMesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_the_mesh_answering_what_it_can() {
    let mut t = TestMesh::start_customised(Setup::default(), |opts, redis| {
        let gateways = StoreConfig {
            redis_url: Some(redis.url()),
            key_prefix: unique_prefix("gw"),
            ..opts.store.clone()
        };
        opts.store = StoreConfig {
            redis_url: Some(format!("memory://{}", unique_prefix("services"))),
            ..StoreConfig::default()
        };
        opts.configure_gateway = Arc::new(move |cfg: &mut gateway::Config| cfg.store = gateways.clone());
    })
    .await;
    let (user_id, token, _) = t.user("kim@example.com").await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;
    let article = t.article(&admin, "Red teapot", 900, 5).await;
    let created = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "ci"}))).await;
    let key = format!("key:{}", created.body["key"].as_str().unwrap());
    let order = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"article_id": article, "quantity": 1}]})),
            &[("idempotency-key", "redis-1")],
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let list = "/v1/articles?q=teapot";
    t.call(Method::GET, list, Some(&token), None).await;
    let hit = t.call(Method::GET, list, Some(&token), None).await;
    assert!(hit.header("cache-status").contains("hit"), "caching works while Redis is up");

    t.redis.kill();
    // Everything the services can answer still answers, live, unmarked; twice, so the second
    // round runs while the cache tier rests after its first failures.
    for round in 1..=2 {
        let (token, key) = (Some(token.as_str()), Some(key.as_str()));
        let reads = [
            ("/v1/users/me", token),
            ("/v1/users/me", key),
            ("/v1/quota", token),
            (list, token),
            ("/v1/orders", token),
            ("/v1/dashboard", token),
            ("/.well-known/jwks.json", None),
        ];
        for (path, auth) in reads {
            let started = Instant::now();
            let answer: Answer = t.call(Method::GET, path, auth, None).await;
            let took = started.elapsed();
            println!(
                "Redis down, round {round}: GET {path}{}: {} in {took:?}, Cache-Status {:?}",
                if auth.is_some_and(|a| a.starts_with("key:")) { " (API key)" } else { "" },
                answer.status,
                answer.header("cache-status"),
            );
            assert_eq!(answer.status, StatusCode::OK, "GET {path}: {:?}", answer.body);
            assert_eq!(answer.header("x-mesh-fallback"), "", "GET {path} is live");
            assert!(took < Duration::from_secs(2), "GET {path} took {took:?}");
        }
    }
    let me = t.call(Method::GET, "/v1/users/me", Some(&key), None).await;
    assert_eq!(me.body["user_id"], user_id.as_str());
    let miss = t.call(Method::GET, list, Some(&token), None).await;
    assert_eq!(miss.header("cache-status"), "mesh-gateway; fwd=uri-miss", "nothing is claimed stored");

    // Redis comes back empty; within a bounded wait, a repeated read is a cache hit again.
    t.redis.restart().await.unwrap();
    let restarted = Instant::now();
    let mut reads = 0;
    let recovered = loop {
        reads += 1;
        let answer = t.call(Method::GET, list, Some(&token), None).await;
        assert_eq!(answer.status, StatusCode::OK);
        if answer.header("cache-status").contains("hit") {
            break true;
        }
        if restarted.elapsed() > Duration::from_secs(10) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("Redis back: a cache hit again after {:?} ({reads} reads)", restarted.elapsed());
    assert!(recovered, "caching did not come back within 10s of Redis");
    t.mesh.stop().await.unwrap();
}
