//! Proxy hygiene at the router, against an upstream that echoes what it received.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_router::config::{Config, Pool};
use mesh_tests::Component;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The stand-in gateway: it echoes the headers and body length it received.
async fn echo_upstream() -> Component {
    support::upstream().await
}

async fn router(upstream: SocketAddr, tweak: impl FnOnce(&mut Config)) -> Component {
    let mut cfg = Config::default();
    cfg.pools.insert("identity".into(), Pool::of(vec![upstream.to_string()]));
    cfg.pools.insert("business".into(), Pool::of(vec![upstream.to_string()]));
    cfg.limits.header_read_timeout = Duration::from_secs(1);
    tweak(&mut cfg);
    Component::start(|listener, shutdown| gateway_router::serve_with_admin(cfg, listener, None, shutdown))
        .await
        .unwrap()
}

/// Sends raw bytes and reads the whole answer (the request says `Connection: close`).
async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn json_body(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str(body).unwrap_or(Value::Null)
}

#[tokio::test]
async fn hop_by_hop_headers_never_reach_the_gateway_and_forwarding_headers_are_set() {
    let upstream = echo_upstream().await;
    let router = router(upstream.addr, |_| {}).await;
    let answer = raw(
        router.addr,
        b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close, x-hop-secret\r\nX-Hop-Secret: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nX-Forwarded-For: 203.0.113.7\r\nX-End-To-End: kept\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = &json_body(&answer)["headers"];
    for hop in ["connection", "x-hop-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(seen.get(hop).is_none(), "{hop} reached the gateway: {seen}");
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(
        seen["x-forwarded-for"], "127.0.0.1",
        "a client-sent chain is replaced by the client the router saw"
    );
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["forwarded"], "for=127.0.0.1;proto=http");
    assert!(!seen["x-request-id"].as_str().unwrap().is_empty());
    assert!(seen["traceparent"].as_str().unwrap().starts_with("00-"));
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused() {
    let upstream = echo_upstream().await;
    let router = router(upstream.addr, |_| {}).await;
    let answer = raw(
        router.addr,
        b"POST /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), 400, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn oversized_headers_are_431_and_oversized_bodies_413() {
    let upstream = echo_upstream().await;
    let router = router(upstream.addr, |cfg| cfg.limits.max_body_bytes = 1024).await;
    let big_header = format!(
        "GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        "a".repeat(32 * 1024)
    );
    let answer = raw(router.addr, big_header.as_bytes()).await;
    assert_eq!(status_of(&answer), 431, "{}", &answer[..answer.len().min(200)]);

    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(
        router.addr,
        format!("GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 431, "{answer}");

    let body = "x".repeat(2048);
    let answer = raw(
        router.addr,
        format!(
            "POST /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(answer.contains("application/problem+json"));

    // A chunked body past the limit never reaches the gateway whole.
    let chunk = format!("{:x}\r\n{}\r\n", 2048, "y".repeat(2048));
    let answer = raw(
        router.addr,
        format!("POST /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}0\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(status_of(&answer) >= 400, "{answer}");
}

#[tokio::test]
async fn a_client_sending_headers_a_byte_at_a_time_is_cut_off() {
    let upstream = echo_upstream().await;
    let router = router(upstream.addr, |cfg| cfg.limits.header_read_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(router.addr).await.unwrap();
    let request =
        b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let started = Instant::now();
    let mut cut_off = None;
    for byte in request {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        // A slowloris client: one byte every 200 ms, bounded by the request's length.
        let mut buf = [0u8; 256];
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await
            && read.map_or(true, |n| n == 0 || buf.starts_with(b"HTTP/1.1 408"))
        {
            cut_off = Some(started.elapsed());
            break;
        }
    }
    let cut_off = cut_off.expect("the router kept waiting for the slow client's headers");
    println!("slow client cut off after {cut_off:?}");
    assert!(cut_off < Duration::from_secs(3), "{cut_off:?}");
}

#[tokio::test]
async fn unclassified_paths_are_404_and_never_forwarded() {
    let upstream = echo_upstream().await;
    let router = router(upstream.addr, |_| {}).await;
    let answer =
        raw(router.addr, b"GET /admin/secret HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status_of(&answer), 404);
    let body = json_body(&answer);
    assert_eq!(body["status"], 404);
    assert!(body.get("headers").is_none(), "the echo upstream answered: {body}");
}

#[tokio::test]
async fn a_pool_without_healthy_instances_answers_503_at_once() {
    let upstream = echo_upstream().await;
    let dead = upstream.addr;
    upstream.stop().await.unwrap();
    let router = router(dead, |cfg| cfg.health.interval = Duration::from_millis(50)).await;
    // The first request finds the instance dead and ejects it; the next is refused at once.
    let _ = raw(router.addr, b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n").await;
    let started = Instant::now();
    let answer =
        raw(router.addr, b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n").await;
    let elapsed = started.elapsed();
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    assert!(elapsed < Duration::from_millis(50), "{elapsed:?}");
}
