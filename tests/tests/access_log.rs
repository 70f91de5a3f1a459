//! The router's access log, read from a real router process's log output: one JSON line of
//! target `access` per forwarded request with every documented field, the query string never
//! in it, and with `access_log.sample = 0` errors and refusals still logged while successes
//! are not.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use mesh_tests::process::{ServiceProcess, binary};
use serde_json::Value;

/// A stand-in gateway: `/t/ok` answers 200 "hello", `/t/fail` 500, `/readyz` 200 for the
/// router's probe.
async fn backend() -> SocketAddr {
    let app = Router::new()
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/t/ok", get(|| async { "hello" }))
        .route("/t/fail", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "broken") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A router whose rule `/t` goes to pool `web` at `backend`, with `access_log.sample = sample`.
fn router(backend: SocketAddr, sample: f64) -> ServiceProcess {
    let config = std::env::temp_dir().join(format!("access-log-{}-{sample}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!(
            "[[rules]]\nprefix = \"/t\"\npool = \"web\"\n\n[pools.web]\ninstances = [\"{backend}\"]\n\n\
             [access_log]\nsample = {sample:?}\n"
        ),
    )
    .unwrap();
    let router = ServiceProcess::start(
        binary("gateway-router"),
        &[
            ("MESH_CONFIG", config.to_str().unwrap()),
            // Nothing else on this machine is asked: the default pools point at a closed port.
            ("MESH_POOLS__IDENTITY__INSTANCES", "127.0.0.1:9"),
            ("MESH_POOLS__BUSINESS__INSTANCES", "127.0.0.1:9"),
        ],
    )
    .expect("the router starts");
    let _ = std::fs::remove_file(config);
    router
}

async fn get_with_id(
    http: &reqwest::Client,
    router: &ServiceProcess,
    path: &str,
    id: &str,
) -> reqwest::Response {
    http.get(format!("http://{}{path}", router.addr))
        .header("x-request-id", id)
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .send()
        .await
        .unwrap()
}

/// The access line of request `id`, waited for (the router writes it before it answers, so it is
/// there by the time the answer is; the wait only covers the pipe).
async fn access_line(router: &ServiceProcess, id: &str) -> Option<Value> {
    let needle = format!("\"request_id\":\"{id}\"");
    let line = router
        .wait_for_log(Duration::from_secs(5), |l| l.contains("\"target\":\"access\"") && l.contains(&needle))
        .await?;
    Some(serde_json::from_str(&line).expect("access lines are JSON"))
}

/// Waits until the router's probe has admitted the backend (a probe every `health.interval`).
async fn until_routed(http: &reqwest::Client, router: &ServiceProcess) {
    let routed = mesh_tests::wait_until(Duration::from_secs(10), || async {
        get_with_id(http, router, "/t/ok", "warmup").await.status() == 200
    })
    .await;
    assert!(routed, "the router never forwarded to the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_line_per_request_with_every_field() {
    let backend = backend().await;
    let router = router(backend, 1.0);
    let http = reqwest::Client::new();
    until_routed(&http, &router).await;

    let answer = get_with_id(&http, &router, "/t/ok?token=secret-value", "access-ok-1").await;
    assert_eq!(answer.status(), 200);
    let line = access_line(&router, "access-ok-1").await.expect("an access line for the request");
    println!("access line: {line}");
    assert_eq!(line["target"], "access");
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the client's trace id");
    assert_eq!(line["client"], "127.0.0.1");
    assert_eq!(line["method"], "GET");
    assert_eq!(line["path"], "/t/ok", "the path, without its query string");
    assert_eq!(line["pool"], "web");
    assert_eq!(line["instance"], backend.to_string());
    assert_eq!(line["attempts"], 1);
    assert_eq!(line["status"], 200);
    assert_eq!(line["bytes"], 5);
    assert!(line["duration_ms"].as_f64().is_some_and(|d| d > 0.0), "{line}");
    assert!(
        !router.log_lines().iter().any(|l| l.contains("secret-value")),
        "the query string reached the log"
    );
    let lines = router.log_lines().iter().filter(|l| l.contains("\"request_id\":\"access-ok-1\"")).count();
    assert_eq!(lines, 1, "one line per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampled_off_the_access_log_still_logs_errors_and_refusals() {
    let backend = backend().await;
    let router = router(backend, 0.0);
    let http = reqwest::Client::new();
    until_routed(&http, &router).await;

    const OK: usize = 20;
    for i in 0..OK {
        assert_eq!(get_with_id(&http, &router, "/t/ok", &format!("sampled-ok-{i}")).await.status(), 200);
    }
    let failed = get_with_id(&http, &router, "/t/fail", "sampled-fail").await;
    assert!(failed.status().is_server_error(), "{}", failed.status());
    let refused = get_with_id(&http, &router, "/nowhere", "sampled-refused").await;
    assert_eq!(refused.status(), 404);

    let fail = access_line(&router, "sampled-fail").await.expect("a 5xx is logged whatever the sampling");
    assert!(fail["status"].as_u64().is_some_and(|s| s >= 500), "{fail}");
    assert!(fail["attempts"].as_u64().is_some_and(|a| a >= 1), "{fail}");
    let refusal =
        access_line(&router, "sampled-refused").await.expect("a refusal is logged whatever the sampling");
    assert_eq!(refusal["status"], 404);
    assert_eq!(refusal["attempts"], 0);
    assert_eq!(refusal["pool"], "none");
    // Each line is written before its answer is sent, and the requests went one after another:
    // the successes' lines, had there been any, are in the log before the failure's.
    let successes = router
        .log_lines()
        .iter()
        .filter(|l| l.contains("\"target\":\"access\"") && l.contains("sampled-ok-"))
        .count();
    assert_eq!(successes, 0, "sample = 0 logs no success");
}
