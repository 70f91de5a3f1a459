//! Every way a credential can be wrong is a 401 problem, through the router and both gateways.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{KID, TestMesh};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_verified_for_signature_time_issuer_audience_and_key() {
    let t = TestMesh::start().await;
    let now = mesh_core::ids::unix_now();

    // A token minted with the real key and valid claims is accepted (the harness mints correctly).
    let valid = t.mint(KID, json!({}));
    let ok = t.call(Method::GET, "/v1/orders", Some(&valid), None).await;
    assert_eq!(ok.status, StatusCode::OK, "{:?}", ok.body);

    let cases = [
        ("expired", t.mint(KID, json!({"exp": now - 60, "iat": now - 700, "nbf": now - 700})), "expired"),
        ("not yet valid", t.mint(KID, json!({"nbf": now + 300})), "not valid yet"),
        ("wrong audience", t.mint(KID, json!({"aud": "someone-else"})), "audience"),
        ("wrong issuer", t.mint(KID, json!({"iss": "evil"})), "issued"),
        ("unknown kid", t.mint("no-such-key", json!({})), "unknown key"),
        ("missing exp", t.mint(KID, json!({"exp": null})), "invalid"),
    ];
    for (case, token, expected) in cases {
        for path in ["/v1/orders", "/v1/users/me"] {
            let answer = t.call(Method::GET, path, Some(&token), None).await;
            answer.assert_problem(401);
            assert!(
                answer.body["detail"].as_str().unwrap().contains(expected),
                "{case} on {path}: {:?}",
                answer.body
            );
            assert_eq!(answer.header("www-authenticate"), "Bearer");
        }
    }

    // A tampered payload breaks the signature.
    let mut parts: Vec<String> = valid.split('.').map(str::to_owned).collect();
    parts[1] = t.mint(KID, json!({"roles": ["admin"]})).split('.').nth(1).unwrap().to_owned();
    let tampered = parts.join(".");
    let answer = t.call(Method::GET, "/v1/orders", Some(&tampered), None).await;
    answer.assert_problem(401);
    assert!(answer.body["detail"].as_str().unwrap().contains("signature"), "{:?}", answer.body);

    // A token signed with another key under the real kid fails the signature check.
    let other = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = ed25519_dalek::pkcs8::EncodePrivateKey::to_pkcs8_pem(&other, Default::default()).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(KID.into());
    let claims = json!({"sub": "x", "iss": "mesh-auth", "aud": "mesh", "nbf": now, "exp": now + 60});
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    t.call(Method::GET, "/v1/orders", Some(&forged), None).await.assert_problem(401);

    // HS256 with the public key as secret (the classic algorithm confusion) is refused.
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = Some(KID.into());
    let confused =
        jsonwebtoken::encode(&hs, &claims, &jsonwebtoken::EncodingKey::from_secret(b"public")).unwrap();
    let answer = t.call(Method::GET, "/v1/orders", Some(&confused), None).await;
    answer.assert_problem(401);
    assert!(answer.body["detail"].as_str().unwrap().contains("algorithm"), "{:?}", answer.body);
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_api_key_is_refused_at_once_on_every_gateway() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.user("keys@example.com").await;
    let created = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "bot"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let key = format!("key:{}", created.body["key"].as_str().unwrap());
    let id = created.body["id"].as_str().unwrap();

    // Used on both domains, so both gateway pools have it cached.
    assert_eq!(t.call(Method::GET, "/v1/users/me", Some(&key), None).await.status, StatusCode::OK);
    assert_eq!(t.call(Method::GET, "/v1/orders", Some(&key), None).await.status, StatusCode::OK);

    let deleted = t.call(Method::DELETE, &format!("/v1/auth/api-keys/{id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    for path in ["/v1/users/me", "/v1/orders"] {
        let answer = t.call(Method::GET, path, Some(&key), None).await;
        answer.assert_problem(401);
        assert!(answer.body["detail"].as_str().unwrap().contains("API key"), "{:?}", answer.body);
    }
    // A made-up key of the right shape is refused the same way.
    let made_up = "key:mk_0000000000000000000000000000000000000000000000000000000000000000";
    t.call(Method::GET, "/v1/orders", Some(made_up), None).await.assert_problem(401);
    // Logout needs a session token, not an API key.
    let (_, token2, _) = t.user("keys2@example.com").await;
    let key2 = t.call(Method::POST, "/v1/auth/api-keys", Some(&token2), Some(json!({"name": "x"}))).await;
    let key2 = format!("key:{}", key2.body["key"].as_str().unwrap());
    t.call(Method::POST, "/v1/auth/logout", Some(&key2), None).await.assert_problem(400);
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_named_4xx_problem_and_changes_nothing() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.user("input@example.com").await;
    let (_, admin, _) = t.user(support::ADMIN_EMAIL).await;
    let article = t.article(&admin, "Spoon", 100, 5).await;

    // (method, path, body, headers, expected status, a word the detail must name)
    type Case =
        (Method, &'static str, serde_json::Value, &'static [(&'static str, &'static str)], u16, &'static str);
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            "/v1/auth/register",
            json!({"email": "no-at", "password": "correct horse battery", "display_name": "x"}),
            &[],
            400,
            "email",
        ),
        (
            Method::POST,
            "/v1/auth/register",
            json!({"email": "a@b.co", "password": "short", "display_name": "x"}),
            &[],
            400,
            "password",
        ),
        (
            Method::POST,
            "/v1/auth/register",
            json!({"email": "a@b.co", "password": "correct horse battery"}),
            &[],
            422,
            "display_name",
        ),
        (
            Method::POST,
            "/v1/orders",
            json!({"items": [{"article_id": article, "quantity": 1}]}),
            &[],
            400,
            "Idempotency-Key",
        ),
        (
            Method::POST,
            "/v1/orders",
            json!({"items": [{"article_id": article, "quantity": 0}]}),
            &[("idempotency-key", "k1")],
            400,
            "quantity",
        ),
        (
            Method::POST,
            "/v1/orders",
            json!({"items": [{"article_id": article, "quantity": -1}]}),
            &[("idempotency-key", "k2")],
            422,
            "quantity",
        ),
        (
            Method::POST,
            "/v1/orders",
            json!({"items": [], "coupon": "FREE"}),
            &[("idempotency-key", "k3")],
            422,
            "coupon",
        ),
        (
            Method::POST,
            "/v1/orders",
            json!({"items": [{"article_id": "nope", "quantity": 1}]}),
            &[("idempotency-key", "k4")],
            400,
            "article_id",
        ),
        (Method::PATCH, "/v1/users/me", json!({"display_name": ""}), &[], 400, "display_name"),
        (Method::PATCH, "/v1/users/me", json!({"email": "x@y.z"}), &[], 422, "email"),
        (Method::POST, "/v1/analytics/events", json!({"type": "Bad Type"}), &[], 400, "type"),
    ];
    for (method, path, body, headers, status, names) in cases {
        let answer = t.call_with(method.clone(), path, Some(&token), Some(body.clone()), headers).await;
        answer.assert_problem(status);
        assert!(
            answer.body["detail"].as_str().unwrap().contains(names),
            "{method} {path} {body}: {:?}",
            answer.body
        );
    }
    for path in [
        "/v1/articles?limit=1000",
        "/v1/articles?cursor=garbage",
        "/v1/orders?bogus=1",
        "/v1/analytics/summary?window=3y",
    ] {
        t.call(Method::GET, path, Some(&token), None).await.assert_problem(400);
    }

    // Nothing changed: no order, stock intact, profile intact.
    let orders = t.call(Method::GET, "/v1/orders", Some(&token), None).await;
    assert_eq!(orders.body["orders"].as_array().unwrap().len(), 0);
    let stock = t.call(Method::GET, &format!("/v1/articles/{article}"), Some(&token), None).await;
    assert_eq!(stock.body["stock"], 5);
    let me = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(me.body["display_name"], "Test");
    t.mesh.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_quota_is_429_with_retry_after_and_rate_limit_headers() {
    let t = TestMesh::start_with(support::Setup { quota_limit: Some(3) }).await;
    let (_, token, _) = t.user("metered@example.com").await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = t.call(Method::GET, "/v1/orders", Some(&token), None).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        assert_eq!(answer.header("ratelimit-limit"), "3");
        remaining.push(answer.header("ratelimit-remaining").to_owned());
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    for path in ["/v1/orders", "/v1/users/me"] {
        let spent = t.call(Method::GET, path, Some(&token), None).await;
        spent.assert_problem(429);
        assert_eq!(spent.header("ratelimit-remaining"), "0");
        let retry: u64 = spent.header("retry-after").parse().unwrap();
        assert!((1..=3600).contains(&retry), "{retry}");
    }
    // Quota is per principal: another user is unaffected.
    let (_, other, _) = t.user("fresh@example.com").await;
    assert_eq!(t.call(Method::GET, "/v1/orders", Some(&other), None).await.status, StatusCode::OK);
    t.mesh.stop().await.unwrap();
}
