//! A client's failures are the client's: slow, broken or abandoned bodies never eject a gateway.
//!
//! Real gateway processes behind the router. Before the router told client-caused endings
//! apart, a gateway answering its own 504 to a request whose body never came counted towards
//! ejecting it (five in a row), so one slow uploader could take a whole pool out.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::chaos::Chaos;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `head` and `partial` of a body on a fresh connection, then (when `abandon`) closes the
/// socket, else waits for the answer; the answer's status (0 when none) and how long it took.
async fn stall(router: SocketAddr, head: &str, partial: &[u8], abandon: bool) -> (u16, Duration) {
    let mut stream = TcpStream::connect(router).await.unwrap();
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(partial).await.unwrap();
    if abandon {
        drop(stream);
        return (0, started.elapsed());
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    (text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), started.elapsed())
}

fn business_instances(status: &Value) -> Vec<Value> {
    status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "business").unwrap()["instances"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_caused_timeouts_never_eject_a_gateway() {
    // The gateways give up on a request after 1 s, before the router's body deadline of 3 s:
    // a stalled upload is answered by a gateway's own 504.
    let chaos = Chaos::start_with_gateway_env(&[("MESH_LIMITS__REQUEST_TIMEOUT", "1s")], |cfg| {
        cfg.limits.body_idle_timeout = Duration::from_secs(3);
        cfg.limits.body_total_timeout = Duration::from_secs(6);
    })
    .await;
    let token = chaos.token("slow-uploader@example.com").await;
    let router = chaos.router.addr;
    let runs = 2 * chaos.business.len() * 5;

    // A streamed body (a POST without Idempotency-Key is not kept for retries) that stops.
    let streamed = format!(
        "POST /v1/analytics/events HTTP/1.1\r\nHost: mesh\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    );
    let mut gateway_timeouts = Vec::new();
    for _ in 0..runs {
        gateway_timeouts.push(stall(router, &streamed, b"{\"type\":", false).await);
    }
    // A kept body (GET) that stops: the router's own 408 at its body deadline.
    let kept = format!(
        "GET /v1/articles HTTP/1.1\r\nHost: mesh\r\nAuthorization: Bearer {token}\r\nContent-Length: 10\r\n\r\n"
    );
    let stalls: Vec<_> = (0..runs)
        .map(|_| {
            let kept = kept.clone();
            tokio::spawn(async move { stall(router, &kept, b"ab", false).await })
        })
        .collect();
    let mut router_timeouts = Vec::new();
    for stalled in stalls {
        router_timeouts.push(stalled.await.unwrap());
    }
    // Bodies abandoned half way (the client goes away).
    for _ in 0..runs {
        stall(router, &streamed, b"{\"ty", true).await;
    }

    // The pool is whole, and nothing was held against its instances.
    let status = chaos.status().await;
    let instances = business_instances(&status);
    let ejections: u64 = instances.iter().map(|i| i["ejections"].as_u64().unwrap()).sum();
    let failures: u64 = instances.iter().map(|i| i["failures"].as_u64().unwrap()).sum();
    println!(
        "client faults: {runs} stalled streamed bodies answered {:?} (gateway timeout 1 s), {runs} stalled kept \
         bodies answered {:?} (router body deadline 3 s), {runs} abandoned; business instances: {} healthy, \
         {ejections} ejections, {failures} failures counted",
        gateway_timeouts.iter().map(|(s, d)| format!("{s} in {:.2}s", d.as_secs_f64())).collect::<Vec<_>>(),
        router_timeouts.iter().map(|(s, _)| *s).collect::<std::collections::BTreeSet<_>>(),
        instances.iter().filter(|i| i["healthy"] == true).count(),
    );
    assert!(gateway_timeouts.iter().all(|(s, _)| *s == 504 || *s == 408), "{gateway_timeouts:?}");
    assert!(
        router_timeouts.iter().all(|(s, d)| *s == 408 && *d <= Duration::from_secs(4)),
        "{router_timeouts:?}"
    );
    assert_eq!(ejections, 0, "{status}");
    assert_eq!(failures, 0, "{status}");
    assert!(instances.iter().all(|i| i["healthy"] == true), "{status}");

    // And the pool still serves.
    let (status, body) =
        chaos.call(reqwest::Method::GET, "/v1/articles?limit=1", Some(&token), None, &[]).await;
    assert_eq!(status, 200, "{body}");
}
