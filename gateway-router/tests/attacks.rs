//! Hostile and heavy clients against the router binary as a real process, on loopback.
//!
//! The router runs as its own process (`gateway-router`), in front of a stand-in gateway in
//! this test process (it answers `/readyz`, echoes what it receives, streams events, and can be
//! told to be slow). Attackers are real sockets, many from their own `127.x.y.z` source
//! addresses so they count as distinct clients. Every test is bounded in connections and time
//! and prints its figures.

mod support;

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mesh_tests::process::http_get;
use mesh_tests::wait_until;
use serde_json::Value;
use support::*;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_cannot_hold_a_pool() {
    const ATTACKERS: usize = 1100;
    const SOURCES: u8 = 5;
    let body_idle = Duration::from_secs(3);
    let upstream = upstream().await;
    let router = router(
        upstream.addr,
        &[("MESH_LIMITS__BODY_IDLE_TIMEOUT", "3s"), ("MESH_LIMITS__BODY_TOTAL_TIMEOUT", "6s")],
    )
    .await;
    let addr = router.addr;

    // Each attacker announces a 100-byte body and then sends nothing: half on a request the
    // router keeps for retries (GET), half on one it never retries (a POST without
    // Idempotency-Key, like a login).
    let sent = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        let sent = sent.clone();
        let source = Ipv4Addr::new(127, 0, 1, 1 + (i % SOURCES as usize) as u8);
        attackers.push(tokio::spawn(async move {
            let mut stream = connect_from(source, addr).await.expect("attack connection");
            let head: &[u8] = if i % 2 == 0 {
                b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nContent-Length: 100\r\n\r\n"
            } else {
                b"POST /v1/auth/login HTTP/1.1\r\nHost: mesh\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            };
            stream.write_all(head).await.unwrap();
            let written = Instant::now();
            sent.fetch_add(1, Ordering::SeqCst);
            let (answer, closed) = read_until_closed(&mut stream, body_idle + Duration::from_secs(5)).await;
            (status_of(&answer), closed.map(|at| at - written))
        }));
    }
    let all_sent = wait_until(Duration::from_secs(20), || {
        let sent = sent.clone();
        async move { sent.load(Ordering::SeqCst) == ATTACKERS }
    })
    .await;
    assert!(all_sent, "only {} attack connections got their head out", sent.load(Ordering::SeqCst));
    let attack_started = Instant::now();

    // Meanwhile another client (127.0.0.1) uses the same pool.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut probes = Vec::new();
    while attack_started.elapsed() < body_idle - Duration::from_millis(800) {
        let started = Instant::now();
        let status =
            http.get(format!("http://{addr}/v1/orders")).send().await.map_or(0, |r| r.status().as_u16());
        probes.push((status, started.elapsed()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut outcomes = Vec::new();
    for attacker in attackers {
        outcomes.push(attacker.await.unwrap());
    }
    let answered_408 = outcomes.iter().filter(|(status, _)| *status == 408).count();
    let closed: Vec<Duration> = outcomes.iter().filter_map(|(_, closed)| *closed).collect();
    let latencies: Vec<Duration> = probes.iter().map(|(_, l)| *l).collect();
    let status = status(&router).await;
    let ejections: u64 = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["instances"].as_array().unwrap().iter())
        .map(|i| i["ejections"].as_u64().unwrap())
        .sum();
    println!(
        "slow bodies: {ATTACKERS} connections (GET and POST) from {SOURCES} addresses; {answered_408} answered 408, {} closed, \
         slowest close {:?} after its head (body deadline {body_idle:?}); other client: {} probes, \
         statuses {:?}, p50 {:?}, p99 {:?}, max {:?}; ejections {ejections}",
        closed.len(),
        closed.iter().max(),
        probes.len(),
        probes.iter().map(|(s, _)| *s).collect::<std::collections::BTreeSet<_>>(),
        quantile(latencies.clone(), 0.5),
        quantile(latencies.clone(), 0.99),
        latencies.iter().max(),
    );
    assert!(probes.len() >= 10, "the attack window held only {} probes", probes.len());
    assert!(probes.iter().all(|(s, l)| *s == 200 && *l < Duration::from_secs(1)), "{probes:?}");
    assert_eq!(closed.len(), ATTACKERS, "every attack connection is closed");
    assert!(
        closed.iter().all(|c| *c <= body_idle + Duration::from_secs(1)),
        "slowest {:?}",
        closed.iter().max()
    );
    assert!(answered_408 >= ATTACKERS * 9 / 10, "{answered_408} of {ATTACKERS} got their 408");
    assert_eq!(ejections, 0, "a client's slowness ejected a gateway: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed() {
    let first_byte = Duration::from_secs(1);
    let header = Duration::from_secs(2);
    let upstream = upstream().await;
    let router = router(
        upstream.addr,
        &[
            ("MESH_LIMITS__FIRST_BYTE_TIMEOUT", "1s"),
            ("MESH_LIMITS__HEADER_READ_TIMEOUT", "2s"),
            ("MESH_LIMITS__MAX_CONNECTIONS", "43"),
            ("MESH_LIMITS__MAX_CONNECTIONS_PER_CLIENT", "20"),
        ],
    )
    .await;
    let addr = router.addr;
    // The readiness checks closed their connections; wait until the router has let them go.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 20 from one client, 25 from another (5 over its cap of 20), then 6 from a third: 3 fill
    // the global cap of 43, and 3 are over it. Nothing is ever sent on them.
    let open = |source: Ipv4Addr, n: usize| async move {
        let mut streams = Vec::new();
        for _ in 0..n {
            streams.push((connect_from(source, addr).await.unwrap(), Instant::now()));
        }
        streams
    };
    let mut held = open(Ipv4Addr::new(127, 0, 2, 1), 20).await;
    held.extend(open(Ipv4Addr::new(127, 0, 2, 2), 25).await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.extend(open(Ipv4Addr::new(127, 0, 2, 3), 6).await);
    let waits: Vec<_> = held
        .into_iter()
        .map(|(mut stream, opened)| {
            tokio::spawn(async move {
                let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
                closed.map(|at| at - opened)
            })
        })
        .collect();
    let mut lifetimes = Vec::new();
    for wait in waits {
        lifetimes.push(wait.await.unwrap().expect("every silent connection is closed"));
    }
    let refused = lifetimes.iter().filter(|l| **l < first_byte - Duration::from_millis(100)).count();
    let longest = lifetimes.iter().max().copied().unwrap_or_default();

    // A head that stops half way, and an HTTP/2 preface that stops half way.
    let partial = |bytes: &'static [u8]| async move {
        let mut stream = connect_from(Ipv4Addr::new(127, 0, 2, 4), addr).await.unwrap();
        let opened = Instant::now();
        stream.write_all(bytes).await.unwrap();
        let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        closed.map(|at| at - opened)
    };
    let half_head = partial(b"GET /v1/orders HTTP/1.1\r\nHost: mesh\r\n").await;
    let half_preface = partial(b"PRI * HTTP/2.0\r\n").await;

    let (_, metrics) = http_get(router.admin, "/metrics").await.unwrap();
    let reason = |r: &str| counter(&metrics, "router_connections_closed_total", &format!("reason=\"{r}\""));
    println!(
        "silent connections: 51 opened, {refused} refused at accept (client cap {}, global cap {}), \
         {} closed at the first-byte deadline, the last after {longest:?} (deadline {first_byte:?}); \
         half a head closed after {half_head:?}, half an h2 preface after {half_preface:?} (deadline {header:?})",
        reason("client_cap"),
        reason("global_cap"),
        reason("first_byte_timeout"),
    );
    assert_eq!(reason("client_cap"), 5.0, "{metrics}");
    assert_eq!(reason("global_cap"), 3.0, "{metrics}");
    assert_eq!(refused, 8);
    assert_eq!(reason("first_byte_timeout"), 43.0);
    assert!(longest <= first_byte + Duration::from_secs(1), "{longest:?}");
    for closed in [half_head, half_preface] {
        let closed = closed.expect("closed");
        assert!(
            closed >= header - Duration::from_millis(100) && closed <= header + Duration::from_secs(1),
            "{closed:?}"
        );
    }
    // The slots are free again.
    let (code, _) = send_from(
        Ipv4Addr::new(127, 0, 2, 2),
        addr,
        "GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_forwarded_for_is_replaced_and_a_trusted_one_keys_the_limiter() {
    let upstream = upstream().await;
    let router = router(
        upstream.addr,
        &[
            ("MESH_TRUSTED_PROXIES", "127.0.3.1/32"),
            ("MESH_LIMITS__PER_CLIENT_RPS", "1"),
            ("MESH_LIMITS__PER_CLIENT_BURST", "3"),
        ],
    )
    .await;
    let addr = router.addr;
    let proxy = Ipv4Addr::new(127, 0, 3, 1);
    let stranger = Ipv4Addr::new(127, 0, 3, 2);
    let get = |xff: &str| {
        format!(
            "GET /v1/orders HTTP/1.1\r\nHost: mesh\r\nX-Forwarded-For: {xff}\r\nConnection: close\r\n\r\n"
        )
    };
    let seen = |answer: &str| -> String {
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str::<Value>(body).unwrap()["headers"]["x-forwarded-for"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // From an untrusted peer the chain is the peer, whatever the client wrote.
    let (code, answer) = send_from(stranger, addr, &get("6.6.6.6")).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(seen(&answer), "127.0.3.2");
    // From the trusted proxy the client is the right-most hop it did not add itself.
    let (code, answer) = send_from(proxy, addr, &get("6.6.6.6, 198.51.100.7")).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(seen(&answer), "198.51.100.7");

    // The limit (1/s, burst 3) keys on that client: one client behind the proxy is limited,
    // another behind the same proxy is not; a stranger cannot escape by writing new chains.
    let burst = |source: Ipv4Addr, xff: fn(usize) -> String| async move {
        let started = Instant::now();
        let mut codes = Vec::new();
        for i in 0..8 {
            codes.push(send_from(source, addr, &get(&xff(i))).await.0);
        }
        (codes, started.elapsed())
    };
    let (limited, elapsed_a) = burst(proxy, |_| "198.51.100.7".into()).await;
    let (other, _) = burst(proxy, |_| "198.51.100.8".into()).await;
    let (spoofing, elapsed_s) = burst(stranger, |i| format!("203.0.113.{i}")).await;
    println!(
        "forwarded-for: stranger's chain replaced; behind the trusted proxy 198.51.100.7 got {limited:?} \
         in {elapsed_a:?}, 198.51.100.8 got {other:?}; the stranger with a new chain each time got {spoofing:?} in {elapsed_s:?}"
    );
    // Allowed at most: what was left of the burst plus one per second that passed, plus one.
    for (codes, elapsed, spent) in [(&limited, elapsed_a, 1), (&spoofing, elapsed_s, 1)] {
        let allowed = codes.iter().filter(|c| **c == 200).count() as f64;
        assert!(
            allowed <= 3.0 - spent as f64 + elapsed.as_secs_f64().ceil() + 1.0,
            "{codes:?} in {elapsed:?}"
        );
        assert!(codes.contains(&429), "{codes:?}");
    }
    assert!(
        other[..2].iter().all(|c| *c == 200),
        "another client behind the proxy has its own bucket: {other:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_streams_do_not_fill_the_request_budget() {
    let upstream = upstream().await;
    let router = router(
        upstream.addr,
        &[("MESH_POOLS__BUSINESS__MAX_CONCURRENCY", "4"), ("MESH_POOLS__BUSINESS__MAX_STREAMS", "6")],
    )
    .await;
    let base = format!("http://{}", router.addr);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let open_stream = |accept: bool| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let mut request = http.get(format!("{base}/v1/analytics/live"));
            if accept {
                request = request.header("accept", "text/event-stream");
            }
            let mut response = request.send().await.unwrap();
            if response.status() == 200 {
                // The stream is live: its first event arrives.
                let chunk = response.chunk().await.unwrap().unwrap_or_default();
                assert!(String::from_utf8_lossy(&chunk).contains("data:"), "{chunk:?}");
            }
            response
        }
    };
    let mut streams = Vec::new();
    for _ in 0..5 {
        streams.push(open_stream(true).await);
    }
    // One more, unannounced: it is seen to be a stream from its answer and moves to the stream
    // budget, giving its request slot back.
    streams.push(open_stream(false).await);
    assert!(streams.iter().all(|s| s.status() == 200));
    let over = open_stream(true).await;
    let unannounced_over = open_stream(false).await;

    // With six streams open, all four request slots are free: four requests held at the
    // stand-in gateway together pass, and with four held a fifth is shed (the limit is real).
    let held = |n: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let answers = futures_util::future::join_all(
                (0..n).map(|_| http.get(format!("{base}/v1/orders/hold?until={n}")).send()),
            )
            .await;
            answers.into_iter().map(|a| a.map_or(0, |r| r.status().as_u16())).collect::<Vec<_>>()
        }
    };
    let four = held(4).await;
    let five = held(5).await;
    let (_, metrics) = http_get(router.admin, "/metrics").await.unwrap();
    println!(
        "streams: 6 open (5 announced, 1 unannounced) in a budget of 6; a 7th answered {}, an unannounced 7th {}; \
         with them open, 4 concurrent requests answered {four:?} and 5 answered {five:?} (4 request slots); \
         shed {}",
        over.status(),
        unannounced_over.status(),
        counter(&metrics, "router_shed_total", "pool=\"business\""),
    );
    assert_eq!(over.status(), 503);
    assert_eq!(unannounced_over.status(), 503);
    assert_eq!(four, vec![200; 4]);
    assert_eq!(five.iter().filter(|s| **s == 200).count(), 4, "{five:?}");
    assert_eq!(five.iter().filter(|s| **s == 503).count(), 1, "{five:?}");
    drop(streams);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_are_not_served_on_the_public_port() {
    let upstream = upstream().await;
    let router = router(upstream.addr, &[]).await;
    for path in ["/metrics", "/mesh/status"] {
        let (public, body) = http_get(router.addr, path).await.unwrap();
        let (admin, _) = http_get(router.admin, path).await.unwrap();
        println!("{path}: public port {public}, admin port {admin}");
        assert_eq!(public, 404, "{body}");
        assert!(body.contains("\"status\":404"), "{body}");
        assert_eq!(admin, 200);
    }
    // Probes and the API document stay public.
    assert_eq!(http_get(router.addr, "/readyz").await.unwrap().0, 200);

    // Configured on, they are served on the public port too, after the rate limit.
    let exposed = self::router(
        upstream.addr,
        &[
            ("MESH_ADMIN_ON_PUBLIC_PORT", "true"),
            ("MESH_LIMITS__PER_CLIENT_RPS", "1"),
            ("MESH_LIMITS__PER_CLIENT_BURST", "2"),
        ],
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(http_get(exposed.addr, "/mesh/status").await.unwrap().0);
    }
    println!("exposed /mesh/status, 4 quick reads at 1/s burst 2: {codes:?}");
    assert_eq!(codes[0], 200);
    assert!(codes.contains(&429), "{codes:?}");
}
