//! The identity gateway keeps answering reads from the last known good answers when a service
//! is out — each principal only their own — and refuses what cannot be answered from them
//! (login, writes) at once with 503 and `Retry-After`.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_core::client::ClientConfig;
use mesh_core::store::StoreConfig;
use mesh_tests::{Component, wait_until};
use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{Answer, Setup, TestMesh};

/// Stops (drains) both replicas of a service.
async fn stop_all(t: &mut TestMesh, kind: Kind) {
    for replica in 1..=2 {
        t.mesh.get_mut(kind, replica).stop().await.unwrap();
    }
}

fn assert_unavailable(answer: &Answer, what: &str, took: Duration) {
    answer.assert_problem(503);
    let retry_after = answer.header("retry-after");
    println!("{what}: 503 in {took:?}, Retry-After {retry_after}");
    assert!(retry_after.parse::<u64>().is_ok_and(|s| s >= 1), "{what}: Retry-After {retry_after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_answers_from_cache_when_user_service_is_down() {
    let mut t = TestMesh::start().await;
    let (ada_id, ada, _) = t.user("ada@example.com").await;
    let (bob_id, bob, _) = t.user("bob@example.com").await;
    let (_, carol, _) = t.user("carol@example.com").await;

    // Ada and Bob read their profiles while the user service is up; Carol never does.
    let mut live = Vec::new();
    for (token, id) in [(&ada, &ada_id), (&bob, &bob_id)] {
        let sent = Instant::now();
        let me = t.call(Method::GET, "/v1/users/me", Some(token), None).await;
        let answered = Instant::now();
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        assert_eq!(me.body["user_id"], id.as_str());
        assert_eq!(me.header("x-mesh-fallback"), "", "a live answer is not marked");
        live.push((sent, answered));
    }

    stop_all(&mut t, Kind::User).await;
    // Age counts whole seconds: let at least one pass since the last live read.
    let last = live[1].1;
    assert!(
        wait_until(Duration::from_secs(3), || async move { last.elapsed() >= Duration::from_secs(1) }).await
    );

    for ((token, id, email), (live_sent, live_answered)) in
        [(&ada, &ada_id, "ada@example.com"), (&bob, &bob_id, "bob@example.com")].into_iter().zip(live)
    {
        let sent = Instant::now();
        let me = t.call(Method::GET, "/v1/users/me", Some(token), None).await;
        let answered = Instant::now();
        assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
        assert_eq!(me.body["user_id"], id.as_str(), "each user gets their own profile");
        assert_eq!(me.body["email"], email);
        assert_eq!(me.header("x-mesh-fallback"), "cache");
        let cache_status = me.header("cache-status");
        assert!(cache_status.starts_with("mesh-gateway;") && cache_status.contains("stale-if-error"));
        // The snapshot was taken between the live request's send and answer.
        let age: u64 = me.header("age").parse().expect("an Age header");
        let (least, most) =
            ((sent - live_answered).as_secs(), (answered - live_sent).as_secs_f64().ceil() as u64);
        println!(
            "{email}: 200 from cache, Age {age} (elapsed since the live read {least}..={most} s), Cache-Status {cache_status}"
        );
        assert!((least..=most).contains(&age) && age >= 1, "Age {age} outside {least}..={most}");
    }

    // A user who never read has nothing to fall back on; writes cannot be served from a cache.
    let started = Instant::now();
    let never = t.call(Method::GET, "/v1/users/me", Some(&carol), None).await;
    assert_unavailable(&never, "GET /v1/users/me, never read", started.elapsed());
    assert!(!never.body.to_string().contains("ada@example.com"), "never crosses principals");
    let started = Instant::now();
    let patch = t.call(Method::PATCH, "/v1/users/me", Some(&ada), Some(json!({"bio": "offline"}))).await;
    assert_unavailable(&patch, "PATCH /v1/users/me", started.elapsed());
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_is_refused_cleanly_when_auth_is_down() {
    // API key verifications are trusted without asking auth for 1 s only, so the key below is
    // accepted from its last known good verification, not from the short-lived cache.
    let store = Arc::new(Mutex::new(StoreConfig::default()));
    let seen = store.clone();
    let mut t = TestMesh::start_customised(Setup::default(), move |opts, _| {
        *seen.lock().unwrap() = opts.store.clone();
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| {
            cfg.api_key_cache_ttl = Duration::from_secs(1);
        });
    })
    .await;
    let store = store.lock().unwrap().clone();
    let (user_id, token, refresh) = t.user("dora@example.com").await;
    let created = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "ci"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let key = format!("key:{}", created.body["key"].as_str().unwrap());
    let via_key = t.call(Method::GET, "/v1/orders", Some(&key), None).await;
    assert_eq!(via_key.status, StatusCode::OK, "{:?}", via_key.body);
    let verified_at = Instant::now();

    stop_all(&mut t, Kind::Auth).await;
    let refusals = [
        ("/v1/auth/login", json!({"email": "dora@example.com", "password": support::PASSWORD})),
        (
            "/v1/auth/register",
            json!({"email": "eve@example.com", "password": support::PASSWORD, "display_name": "Eve"}),
        ),
        ("/v1/auth/refresh", json!({"refresh_token": refresh})),
    ];
    for (path, body) in refusals {
        let started = Instant::now();
        let refused = t.call(Method::POST, path, None, Some(body)).await;
        let took = started.elapsed();
        assert_unavailable(&refused, &format!("POST {path}"), took);
        assert!(took < Duration::from_secs(1), "POST {path} took {took:?}");
    }
    let started = Instant::now();
    let create_key =
        t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "x"}))).await;
    assert_unavailable(&create_key, "POST /v1/auth/api-keys", started.elapsed());

    // A token issued before is verified locally; the JWKS is served from memory.
    let orders = t.call(Method::GET, "/v1/orders", Some(&token), None).await;
    assert_eq!(orders.status, StatusCode::OK, "{:?}", orders.body);
    let jwks = t.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.status, StatusCode::OK);

    // The API key verified before still works once its cache entry is stale: from the last
    // verification. A key never verified cannot be accepted.
    assert!(
        wait_until(
            Duration::from_secs(3),
            || async move { verified_at.elapsed() > Duration::from_millis(1200) }
        )
        .await
    );
    let via_key = t.call(Method::GET, "/v1/orders", Some(&key), None).await;
    println!("API key {:?} after its verification, auth down: {}", verified_at.elapsed(), via_key.status);
    assert_eq!(via_key.status, StatusCode::OK, "{:?}", via_key.body);
    let me = t.call(Method::GET, "/v1/users/me", Some(&key), None).await;
    assert_eq!(me.body["user_id"], user_id.as_str());
    let started = Instant::now();
    let unknown = t.call(Method::GET, "/v1/orders", Some("key:mk_never_verified_0123456789"), None).await;
    assert_unavailable(&unknown, "an API key never verified", started.elapsed());

    // A gateway started now, while auth is down, verifies tokens with the last known key set.
    let mut cfg = gateway::Config::for_domain(gateway::Domain::Identity);
    cfg.store = store;
    let endpoints = |kind: Kind| {
        ClientConfig::to(
            t.mesh.components.iter().filter(|c| c.kind == kind).map(|c| format!("http://{}", c.addr)),
        )
    };
    cfg.services.auth = endpoints(Kind::Auth);
    cfg.services.user = endpoints(Kind::User);
    cfg.services.quota = endpoints(Kind::Quota);
    cfg.services.orders = endpoints(Kind::Orders);
    cfg.services.articles = endpoints(Kind::Articles);
    cfg.services.analytics = endpoints(Kind::Analytics);
    let fresh = Component::start(|listener, shutdown| gateway::serve(cfg, listener, shutdown)).await.unwrap();
    let started = Instant::now();
    // Bounded polling while the new gateway comes up.
    let answer = loop {
        let answer = t.call_at(&fresh.uri(), Method::GET, "/v1/users/me", Some(&token), None, &[]).await;
        if answer.status == StatusCode::OK || started.elapsed() > Duration::from_secs(10) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "a gateway started during the auth outage verified a token after {:?}: {}",
        started.elapsed(),
        answer.status
    );
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.body["user_id"], user_id.as_str());
    let jwks = t.call_at(&fresh.uri(), Method::GET, "/.well-known/jwks.json", None, None, &[]).await;
    assert_eq!(jwks.status, StatusCode::OK, "{:?}", jwks.body);
    assert_eq!(jwks.header("x-mesh-fallback"), "cache");
    println!("its JWKS: x-mesh-fallback {}, Age {}", jwks.header("x-mesh-fallback"), jwks.header("age"));
    fresh.stop().await.unwrap();
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_outage_meters_locally_with_the_last_known_plan() {
    let limit = 4;
    let mut t = TestMesh::start_with(Setup { quota_limit: Some(limit) }).await;
    let (_, token, _) = t.user("fay@example.com").await;
    // Counts one request and remembers the status (limit 4, 1 used).
    let quota = t.call(Method::GET, "/v1/quota", Some(&token), None).await;
    assert_eq!(quota.status, StatusCode::OK);
    assert_eq!(quota.body["limit"], limit);

    stop_all(&mut t, Kind::Quota).await;
    let cached = t.call(Method::GET, "/v1/quota", Some(&token), None).await;
    assert_eq!(cached.status, StatusCode::OK, "{:?}", cached.body);
    assert_eq!(cached.header("x-mesh-fallback"), "cache", "the handler's mark wins");
    assert_eq!(cached.body["limit"], limit);

    // Each identity gateway counts on its own from the last known status (3 left): between 3
    // and 2 × 3 more requests pass, then 429, all marked degraded.
    let mut passed = 1; // the cached /v1/quota above
    let refused = loop {
        let me = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
        assert_eq!(me.header("x-mesh-fallback"), "degraded", "{:?}", me.body);
        assert_eq!(me.header("ratelimit-limit"), limit.to_string());
        if me.status != StatusCode::OK {
            break me;
        }
        passed += 1;
        assert!(passed <= 2 * (limit - 1), "the local limit did not hold after {passed} requests");
    };
    refused.assert_problem(429);
    println!(
        "quota down: {passed} requests passed under the local limit, then 429 (Retry-After {})",
        refused.header("retry-after")
    );
    assert!(passed >= limit - 1);
    assert!(!refused.header("retry-after").is_empty());
    t.mesh.stop().await.unwrap();
}
