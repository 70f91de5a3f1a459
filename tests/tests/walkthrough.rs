//! The README walk-through, end to end through the router: two replicas of each gateway and
//! service on one real Redis.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{ADMIN_EMAIL, TestMesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_works_end_to_end() {
    let t = TestMesh::start().await;

    // Register and log in; the admin gets the admin role from config.
    let (user_id, token, refresh) = t.user("ada@example.com").await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;

    // Refresh rotates the pair; the old refresh token is then refused.
    let rotated =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    assert_ne!(rotated.body["refresh_token"], refresh.as_str());
    let reused =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    reused.assert_problem(401);
    // Reuse revoked the whole session: the newest refresh token is dead too.
    let newest = rotated.body["refresh_token"].clone();
    let revoked =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": newest}))).await;
    revoked.assert_problem(401);
    // And so are the session's access tokens, on every gateway within a second (revocation.rs);
    // this one was never used, so no gateway holds a verdict on it: refused at once.
    let stale = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    stale.assert_problem(401);
    let token = t.login("ada@example.com").await.body["access_token"].as_str().unwrap().to_owned();

    // Profile, read and changed.
    let me = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["user_id"], user_id.as_str());
    assert_eq!(me.body["email"], "ada@example.com");
    assert!(!me.header("x-mesh-gateway").is_empty());
    assert!(!me.header("x-request-id").is_empty());
    let patched =
        t.call(Method::PATCH, "/v1/users/me", Some(&token), Some(json!({"bio": "Counts things."}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(patched.body["bio"], "Counts things.");

    // Quota: every authenticated call is metered and says so.
    let quota = t.call(Method::GET, "/v1/quota", Some(&token), None).await;
    assert_eq!(quota.status, StatusCode::OK);
    assert_eq!(quota.body["plan"], "free");
    assert!(quota.body["used"].as_u64().unwrap() >= 3, "{:?}", quota.body);
    assert_eq!(quota.header("ratelimit-limit"), quota.body["limit"].to_string());
    assert!(!quota.header("ratelimit-remaining").is_empty());
    assert!(quota.header("ratelimit-reset").parse::<u64>().unwrap() >= 1);

    // An API key works in place of a token, is listed without its secret, and dies when deleted.
    let key = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "ci"}))).await;
    assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
    let secret = format!("key:{}", key.body["key"].as_str().unwrap());
    let via_key = t.call(Method::GET, "/v1/users/me", Some(&secret), None).await;
    assert_eq!(via_key.status, StatusCode::OK, "{:?}", via_key.body);
    assert_eq!(via_key.body["user_id"], user_id.as_str());
    let listed = t.call(Method::GET, "/v1/auth/api-keys", Some(&token), None).await;
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 1);
    assert!(!listed.body.to_string().contains(&secret[4..]), "the list leaks the secret");

    // The admin creates an article; a plain user may not.
    let article = t.article(&admin, "Blue teapot", 1250, 10).await;
    let refused = t
        .call(
            Method::POST,
            "/v1/articles",
            Some(&token),
            Some(json!({"title": "x", "price_cents": 1, "stock": 1})),
        )
        .await;
    refused.assert_problem(403);
    let found = t.call(Method::GET, "/v1/articles?q=teapot", Some(&token), None).await;
    assert_eq!(found.body["articles"][0]["id"], article.as_str(), "{:?}", found.body);

    // An order with an Idempotency-Key, sent three times, is one order.
    let order_body = json!({"items": [{"article_id": article, "quantity": 2}]});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = t
            .call_with(
                Method::POST,
                "/v1/orders",
                Some(&token),
                Some(order_body.clone()),
                &[("idempotency-key", "order-1")],
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        assert_eq!(created.body["total_cents"], 2500);
        assert_eq!(
            created.header("location"),
            format!("/v1/orders/{}", created.body["id"].as_str().unwrap())
        );
        ids.push(created.body["id"].as_str().unwrap().to_owned());
    }
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    let listed = t.call(Method::GET, "/v1/orders", Some(&token), None).await;
    assert_eq!(listed.body["orders"].as_array().unwrap().len(), 1, "{:?}", listed.body);
    let stock = t.call(Method::GET, &format!("/v1/articles/{article}"), Some(&token), None).await;
    assert_eq!(stock.body["stock"], 8, "stock taken once");
    let one = t.call(Method::GET, &format!("/v1/orders/{}", ids[0]), Some(&token), None).await;
    assert_eq!(one.status, StatusCode::OK);
    // The same key with another body is a conflict, and another user cannot see the order.
    let conflict = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(json!({"items": [{"article_id": article, "quantity": 3}]})),
            &[("idempotency-key", "order-1")],
        )
        .await;
    conflict.assert_problem(409);
    let others = t.call(Method::GET, &format!("/v1/orders/{}", ids[0]), Some(&admin), None).await;
    others.assert_problem(404);

    // Analytics and the dashboard.
    let event = t
        .call(
            Method::POST,
            "/v1/analytics/events",
            Some(&token),
            Some(json!({"type": "page.view", "properties": {"path": "/"}})),
        )
        .await;
    assert_eq!(event.status, StatusCode::ACCEPTED, "{:?}", event.body);
    let summary = t.call(Method::GET, "/v1/analytics/summary?window=5m", Some(&token), None).await;
    assert_eq!(summary.body["total"], 1, "{:?}", summary.body);
    let dashboard = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    assert_eq!(dashboard.status, StatusCode::OK);
    assert_eq!(dashboard.body["recent_orders"]["status"], "ok", "{:?}", dashboard.body);
    assert_eq!(dashboard.body["recent_orders"]["data"][0]["id"], ids[0].as_str());
    assert_eq!(dashboard.body["articles"]["status"], "ok");
    assert_eq!(dashboard.body["activity"]["status"], "ok");
    assert_eq!(dashboard.body["activity"]["data"]["total"], 1);

    // Logout revokes the session: its refresh token stops working.
    let session = t.login("ada@example.com").await;
    let out = t
        .call(Method::POST, "/v1/auth/logout", Some(session.body["access_token"].as_str().unwrap()), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{:?}", out.body);
    let after = t
        .call(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(json!({"refresh_token": session.body["refresh_token"]})),
        )
        .await;
    after.assert_problem(401);

    // The router publishes both gateways' OpenAPI documents merged, and its view of the pools.
    let openapi = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(openapi.status, StatusCode::OK);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in ["/v1/auth/register", "/v1/users/me", "/v1/orders", "/v1/dashboard"] {
        assert!(openapi.body["paths"].get(path).is_some(), "merged document lacks {path}");
    }
    // Its view of the pools is on its admin listener only.
    t.call(Method::GET, "/mesh/status", None, None).await.assert_problem(404);
    let status: serde_json::Value =
        t.http.get(format!("{}/mesh/status", t.admin_base)).send().await.unwrap().json().await.unwrap();
    let status = support::Answer { status: StatusCode::OK, headers: Default::default(), body: status };
    let pools = status.body["pools"].as_array().unwrap();
    assert_eq!(pools.len(), 2);
    assert!(pools.iter().all(|p| p["healthy_instances"] == 2), "{:?}", status.body);

    // The JWKS is public.
    let jwks = t.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(jwks.body["keys"][0]["kid"], support::KID);
    t.mesh.stop().await.unwrap();
}
