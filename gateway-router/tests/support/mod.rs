//! The router's test support: a stand-in gateway in the test process, the router binary as a
//! real process in front of it, and raw loopback clients from chosen source addresses.

#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::stream;
use mesh_tests::process::{ServiceProcess, http_get};
use mesh_tests::{Component, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Requests of `/v1/orders/hold` in the stand-in gateway at once.
pub(crate) static HOLDING: AtomicUsize = AtomicUsize::new(0);

#[derive(serde::Deserialize)]
pub(crate) struct Hold {
    pub(crate) until: usize,
}

/// The stand-in gateway: `/readyz`; `/v1/analytics/live` streams an event every 100 ms;
/// `/v1/orders/hold` holds requests until enough are there at once; `/v1/users/down` answers
/// its own 503 and `/v1/users/relayed` a 503 marked as a service's fault; everything else
/// echoes its headers and body length.
pub(crate) async fn upstream() -> Component {
    Component::start(|listener, shutdown| async move {
        let app = axum::Router::new()
            .route("/readyz", get(|| async { "ready" }))
            .route(
                "/v1/analytics/live",
                get(|| async {
                    let ticks = stream::unfold(0u64, |n| async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Some((Ok::<_, std::convert::Infallible>(Event::default().data(n.to_string())), n + 1))
                    });
                    Sse::new(ticks).keep_alive(KeepAlive::default())
                }),
            )
            .route(
                "/v1/orders/hold",
                get(|axum::extract::Query(q): axum::extract::Query<Hold>| async move {
                    // Answers once `q.until` requests are here at once (or after 3 s), so a
                    // test sees how many the router let through together.
                    HOLDING.fetch_add(1, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while HOLDING.load(Ordering::SeqCst) < q.until && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let together = HOLDING.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    HOLDING.fetch_sub(1, Ordering::SeqCst);
                    together.to_string()
                }),
            )
            .route("/v1/users/down", axum::routing::any(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route(
                "/v1/users/relayed",
                get(|| async {
                    (StatusCode::SERVICE_UNAVAILABLE, [("x-mesh-fault", "service")]).into_response()
                }),
            )
            .fallback(|req: Request| async move {
                let headers: serde_json::Map<String, Value> = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or("?"))))
                    .collect();
                let body = axum::body::to_bytes(req.into_body(), usize::MAX).await.unwrap_or_default();
                Json(json!({"headers": headers, "body_len": body.len()}))
            });
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
        Ok(())
    })
    .await
    .unwrap()
}

/// The router binary in front of `upstream` (both pools), with `env` on top.
pub(crate) async fn router(upstream: SocketAddr, env: &[(&str, &str)]) -> ServiceProcess {
    router_over(&[upstream], env).await
}

/// The router binary in front of every one of `upstreams` (both pools), with `env` on top.
pub(crate) async fn router_over(upstreams: &[SocketAddr], env: &[(&str, &str)]) -> ServiceProcess {
    let up = upstreams.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",");
    let mut all: Vec<(&str, &str)> = vec![
        ("MESH_POOLS__IDENTITY__INSTANCES", &up),
        ("MESH_POOLS__BUSINESS__INSTANCES", &up),
        ("MESH_HEALTH__INTERVAL", "200ms"),
        ("MESH_LOG", "warn,mesh_core::process=info,gateway_router=info"),
    ];
    all.extend_from_slice(env);
    let process =
        ServiceProcess::start(env!("CARGO_BIN_EXE_gateway-router"), &all).expect("the router starts");
    let ready = wait_until(Duration::from_secs(10), || async {
        http_get(process.addr, "/readyz").await.is_ok_and(|(code, _)| code == 200)
    })
    .await;
    assert!(ready, "the router never became ready");
    process
}

/// A TCP connection to `to` from the loopback address `source` (another client, as the router
/// sees it).
pub(crate) async fn connect_from(source: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(to).await
}

/// Sends `request` on a fresh connection from `source`; the status line's code (0 if none).
pub(crate) async fn send_from(source: Ipv4Addr, to: SocketAddr, request: &str) -> (u16, String) {
    let mut stream = connect_from(source, to).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    (text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), text)
}

/// Reads until the peer closes (or `limit` passes): what it sent, and when it closed.
pub(crate) async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Option<Instant>) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&answer).into_owned(), Some(Instant::now()));
            }
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&answer).into_owned(), None),
        }
    }
}

pub(crate) fn status_of(answer: &str) -> u16 {
    answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A counter's value in Prometheus text, summed over the series whose labels contain `labels`.
pub(crate) fn counter(metrics: &str, name: &str, labels: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) async fn status(router: &ServiceProcess) -> Value {
    let (_, body) = http_get(router.admin, "/mesh/status").await.unwrap();
    serde_json::from_str(&body).unwrap()
}

pub(crate) fn quantile(mut xs: Vec<Duration>, q: f64) -> Duration {
    xs.sort();
    xs.get(((xs.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or_default()
}
