//! The edge of a gateway, driven with `oneshot` (no socket): routing, problems, request ids,
//! body and header validation, and authentication failures that need no service.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use gateway::{Config, Domain};
use http_body_util::BodyExt;
use mesh_core::admin::Readiness;
use mesh_core::shutdown::Drain;
use tower::ServiceExt;

/// A gateway whose services are unreachable (nothing listens on port 1).
async fn app(domain: Domain, tweak: impl FnOnce(&mut Config)) -> axum::Router {
    let mut cfg = Config::for_domain(domain);
    for svc in [
        &mut cfg.services.auth,
        &mut cfg.services.user,
        &mut cfg.services.quota,
        &mut cfg.services.orders,
        &mut cfg.services.articles,
        &mut cfg.services.analytics,
    ] {
        svc.endpoints = vec!["http://127.0.0.1:1".into()];
        svc.connect_timeout = std::time::Duration::from_millis(200);
        svc.request_timeout = std::time::Duration::from_millis(500);
    }
    tweak(&mut cfg);
    let state = gateway::state(cfg).await.unwrap();
    let readiness = Readiness::new(Drain::new());
    readiness.set_started();
    gateway::app(state, "test-gw", readiness)
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

fn assert_problem(
    status: StatusCode,
    headers: &axum::http::HeaderMap,
    body: &serde_json::Value,
    expected: u16,
) {
    assert_eq!(status.as_u16(), expected, "{body}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["status"], expected);
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"), "{body}");
    assert!(!body["title"].as_str().unwrap().is_empty());
    assert!(!body["detail"].as_str().unwrap().is_empty());
    assert_eq!(body["instance"].as_str().unwrap(), headers["x-request-id"].to_str().unwrap());
}

fn post_json(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn unknown_paths_and_the_other_domains_paths_are_404_problems() {
    let identity = app(Domain::Identity, |_| {}).await;
    for path in ["/nope", "/v1/orders", "/v1/articles/x", "/v1/dashboard"] {
        let (status, headers, body) = send(&identity, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_problem(status, &headers, &body, 404);
        assert_eq!(headers["x-mesh-gateway"], "test-gw");
    }
    let business = app(Domain::Business, |_| {}).await;
    for path in ["/v1/auth/login", "/v1/users/me", "/.well-known/jwks.json"] {
        let (status, headers, body) = send(&business, Request::get(path).body(Body::empty()).unwrap()).await;
        assert_problem(status, &headers, &body, 404);
    }
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let identity = app(Domain::Identity, |_| {}).await;
    let (status, headers, body) =
        send(&identity, Request::get("/v1/auth/login").body(Body::empty()).unwrap()).await;
    assert_problem(status, &headers, &body, 405);
}

#[tokio::test]
async fn a_sane_request_id_is_kept_and_an_insane_one_replaced() {
    let identity = app(Domain::Identity, |_| {}).await;
    let req = Request::get("/nope").header("x-request-id", "client-id-42").body(Body::empty()).unwrap();
    let (_, headers, body) = send(&identity, req).await;
    assert_eq!(headers["x-request-id"], "client-id-42");
    assert_eq!(body["instance"], "client-id-42");

    let long = "x".repeat(200);
    let req = Request::get("/nope").header("x-request-id", long.as_str()).body(Body::empty()).unwrap();
    let (_, headers, _) = send(&identity, req).await;
    let id = headers["x-request-id"].to_str().unwrap();
    assert_ne!(id, long);
    assert!(mesh_core::ids::is_id(id), "{id}");
}

#[tokio::test]
async fn malformed_bodies_are_named_problems() {
    let identity = app(Domain::Identity, |_| {}).await;
    let (status, headers, body) = send(&identity, post_json("/v1/auth/login", "{not json")).await;
    assert_problem(status, &headers, &body, 400);

    let (status, headers, body) =
        send(&identity, post_json("/v1/auth/login", r#"{"email":"a@b.c","password":"x","admin":true}"#))
            .await;
    assert_problem(status, &headers, &body, 422);
    assert!(body["detail"].as_str().unwrap().contains("admin"), "names the unknown field: {body}");

    let (status, headers, body) = send(&identity, post_json("/v1/auth/login", r#"{"email":"a@b.c"}"#)).await;
    assert_problem(status, &headers, &body, 422);
    assert!(body["detail"].as_str().unwrap().contains("password"), "names the missing field: {body}");

    let (status, headers, body) =
        send(&identity, post_json("/v1/auth/register", r#"{"email":1,"password":"x","display_name":"y"}"#))
            .await;
    assert_problem(status, &headers, &body, 422);
    assert!(body["detail"].as_str().unwrap().contains("email"), "{body}");

    let req = Request::post("/v1/auth/login").body(Body::from(r#"{"email":"a","password":"b"}"#)).unwrap();
    let (status, headers, body) = send(&identity, req).await;
    assert_problem(status, &headers, &body, 415);
}

#[tokio::test]
async fn an_oversized_body_is_a_413_problem() {
    let identity = app(Domain::Identity, |cfg| cfg.limits.body_bytes = 1024).await;
    let big = format!(r#"{{"email":"a@b.c","password":"{}"}}"#, "x".repeat(4096));
    let (status, headers, body) = send(&identity, post_json("/v1/auth/login", &big)).await;
    assert_problem(status, &headers, &body, 413);
}

#[tokio::test]
async fn unknown_query_parameters_are_refused() {
    let business = app(Domain::Business, |_| {}).await;
    // Authentication runs first; without credentials the answer is 401 whatever the query.
    let (status, _, _) =
        send(&business, Request::get("/v1/articles?bogus=1").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_401_problems_with_a_challenge() {
    let business = app(Domain::Business, |_| {}).await;
    let cases: [(Option<(&str, &str)>, &str); 6] = [
        (None, "Bearer"),
        (Some(("authorization", "Basic dXNlcjpwYXNz")), "Bearer"),
        (Some(("authorization", "Bearer not.a.jwt")), "malformed"),
        // HS256 token: the algorithm is refused before any key lookup.
        (
            Some((
                "authorization",
                "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
            )),
            "algorithm",
        ),
        (Some(("x-api-key", "short")), "API key"),
        (Some(("x-api-key", "has spaces in it")), "API key"),
    ];
    for (credential, expected) in cases {
        let mut req = Request::get("/v1/orders");
        if let Some((name, value)) = credential {
            req = req.header(name, value);
        }
        let (status, headers, body) = send(&business, req.body(Body::empty()).unwrap()).await;
        assert_problem(status, &headers, &body, 401);
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(body["detail"].as_str().unwrap().contains(expected), "{credential:?}: {body}");
    }
}

#[tokio::test]
async fn an_unreachable_service_is_a_503_problem_with_retry_after_and_no_internals() {
    let identity = app(Domain::Identity, |_| {}).await;
    let (status, headers, body) =
        send(&identity, post_json("/v1/auth/login", r#"{"email":"a@b.c","password":"long enough pw"}"#))
            .await;
    assert_problem(status, &headers, &body, 503);
    assert!(headers.contains_key(header::RETRY_AFTER));
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn admin_endpoints_answer_on_the_gateway_port() {
    let identity = app(Domain::Identity, |_| {}).await;
    for path in ["/healthz", "/readyz"] {
        let res = identity.clone().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    let res = identity.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn each_gateway_publishes_an_openapi_3_1_document_of_its_own_routes() {
    for (domain, mine, theirs) in [
        (Domain::Identity, "/v1/auth/register", "/v1/orders"),
        (Domain::Business, "/v1/orders/{id}", "/v1/auth/login"),
    ] {
        let app = app(domain, |_| {}).await;
        let (status, _, doc) = send(&app, Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
        assert!(doc["paths"].get(mine).is_some(), "{domain:?} lacks {mine}");
        assert!(doc["paths"].get(theirs).is_none(), "{domain:?} documents {theirs}");
    }
}

#[tokio::test]
async fn cors_preflight_is_answered_only_when_configured() {
    let off = app(Domain::Business, |_| {}).await;
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/orders")
            .header(header::ORIGIN, "https://app.example.com")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let res = off.clone().oneshot(preflight()).await.unwrap();
    assert!(!res.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));

    let on =
        app(Domain::Business, |cfg| cfg.cors.allowed_origins = vec!["https://app.example.com".into()]).await;
    let res = on.clone().oneshot(preflight()).await.unwrap();
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
}
