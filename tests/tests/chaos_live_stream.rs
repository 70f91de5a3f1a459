//! Live streams against gateways that are real processes: a SIGKILLed gateway ends its streams
//! and the client resumes with `Last-Event-ID`; a client that reads nothing does not grow the
//! gateway's memory.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use meshctl::Kind;
use reqwest::Method;
use support::chaos::Chaos;
use support::sse::{SseStream, event};

const LIVE: &str = "/v1/analytics/live";

/// Resident memory of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn user_id(chaos: &Chaos, token: &str) -> String {
    let (status, me) = chaos.call(Method::GET, "/v1/users/me", Some(token), None, &[]).await;
    assert_eq!(status, 200, "{me}");
    me["user_id"].as_str().unwrap().to_owned()
}

async fn analytics(chaos: &Chaos) -> AnalyticsServiceClient<tonic::transport::Channel> {
    let addr = chaos.services.get(Kind::Analytics, 1).addr;
    AnalyticsServiceClient::new(mesh_tests::grpc_channel(addr).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilling_the_gateway_mid_stream_ends_the_stream_and_the_client_resumes_from_last_event_id() {
    let mut chaos = Chaos::start().await;
    let token = chaos.token("sse-kill@example.com").await;
    let owner = user_id(&chaos, &token).await;
    let mut record = analytics(&chaos).await;

    let mut stream = SseStream::open(&chaos.base, LIVE, &token, &[]).await;
    let serving = stream.response.headers()["x-mesh-gateway"].to_str().unwrap().to_owned();
    let victim = chaos.business.iter().position(|g| g.name == serving).expect("served by a business gateway");
    let mut last_id = String::new();
    for n in 1..=3 {
        record.record_event(event(&owner, "tick", &[("n", &n.to_string())])).await.unwrap();
        let got = stream.next(Duration::from_secs(5)).await.expect("a live event");
        assert!(got.data.contains(&format!("\"n\":\"{n}\"")), "{}", got.data);
        last_id = got.id;
    }

    chaos.business[victim].kill().await;
    let killed = Instant::now();
    assert!(stream.ends_within(Duration::from_secs(5)).await, "the stream outlived its SIGKILLed gateway");
    let ended = killed.elapsed();
    for n in 4..=7 {
        record.record_event(event(&owner, "tick", &[("n", &n.to_string())])).await.unwrap();
    }
    let reconnect = Instant::now();
    let mut resumed = SseStream::open(&chaos.base, LIVE, &token, &[("last-event-id", &last_id)]).await;
    let took = reconnect.elapsed();
    assert_ne!(resumed.response.headers()["x-mesh-gateway"], serving.as_str());
    for n in 4..=7 {
        let got = resumed.next(Duration::from_secs(5)).await.expect("a missed event");
        assert!(got.data.contains(&format!("\"n\":\"{n}\"")), "expected n={n}: {}", got.data);
    }
    assert!(resumed.next(Duration::from_millis(500)).await.is_none(), "an event came twice or from nowhere");
    println!(
        "SIGKILLed gateway: stream ended {ended:?} after the kill; resumed through the router in {took:?}; 3 events before, 4 resumed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sse_client_does_not_grow_gateway_memory() {
    // A small buffer and a short stall limit; 3,000 16 KiB events against a
    // client that reads nothing (analytics allows events that large here: the default is 4 KiB).
    let chaos = Chaos::start_customised(
        &[("MESH_STREAMS__BUFFER", "16"), ("MESH_STREAMS__STALL_TIMEOUT", "2s")],
        |_| {},
        |opts| {
            opts.configure_analytics =
                Arc::new(|cfg: &mut analytics_service::Config| cfg.max_properties_bytes = 64 * 1024)
        },
    )
    .await;
    let token = chaos.token("sse-slow@example.com").await;
    let owner = user_id(&chaos, &token).await;
    let mut record = analytics(&chaos).await;
    let gateway = &chaos.business[0];
    let direct = format!("http://{}", gateway.addr);
    let pid = gateway.process.as_ref().unwrap().pid();

    let big = "x".repeat(500);
    let properties: Vec<(String, String)> = (0..32).map(|i| (format!("p{i}"), big.clone())).collect();
    let properties: Vec<(&str, &str)> = properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Warm-up: the same events through the same gateway to a client that reads them all. What
    // serving this traffic costs once (allocator arenas, connection and codec buffers, lazily
    // made state) is paid here, so the measured phase sees only what a slow client adds.
    let mut reader = SseStream::open(&direct, LIVE, &token, &[]).await;
    const WARM_UP: usize = 300;
    for _ in 0..WARM_UP {
        record.record_event(event(&owner, "bulk", &properties)).await.unwrap();
        reader.next(Duration::from_secs(10)).await.expect("the reading client gets every event");
    }
    drop(reader);
    let warm = rss_kib(pid);

    let stream = SseStream::open(&direct, LIVE, &token, &[]).await;
    let before = rss_kib(pid);
    let mut sent_bytes = 0usize;
    let mut peak = before;
    let started = Instant::now();
    let mut events = 0;
    // A fixed volume, far above what the mechanism holds (the buffer, flow-control windows), so
    // memory that grew with the traffic would stand out; the deadline only bounds a machine too
    // slow to send it.
    const EVENTS: usize = 3_000;
    while events < EVENTS && started.elapsed() < Duration::from_secs(60) {
        record.record_event(event(&owner, "bulk", &properties)).await.unwrap();
        sent_bytes += 32 * 500;
        events += 1;
        if events % 50 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    peak = peak.max(rss_kib(pid));
    let growth_kib = peak.saturating_sub(before);
    println!(
        "slow client: {events} events ({} KiB) recorded in {:?} while it read nothing; gateway RSS {warm} KiB after a {WARM_UP}-event warm-up, {before} KiB -> peak {peak} KiB (+{growth_kib} KiB)",
        sent_bytes / 1024,
        started.elapsed()
    );
    let sent_kib = (sent_bytes / 1024) as u64;
    assert_eq!(events, EVENTS, "only {events} events sent in a minute: too little traffic to mean anything");
    // What the mechanism may hold for a client that reads nothing: its buffer (16 events), the
    // upstream gRPC stream's HTTP/2 receive window (hyper's client default, 2 MiB: the pump stops
    // reading upstream while the buffer is full) and hyper's write buffer towards the client
    // (about 400 KiB). Four times that allows the allocator's slack: the same bytes are decoded
    // and encoded on different worker threads, whose glibc arenas each keep their high-water
    // mark (about 1.7 times what is held, seen here). A gateway that queued what went by would
    // pass the bound within the first 1,500 of the 3,000 events (the kernel's socket buffers
    // take a few MiB before the gateway holds anything).
    let event_kib = sent_kib / events as u64;
    let held_kib = 16 * event_kib + 2 * 1024 + 400;
    let bound_kib = (4 * held_kib).min(sent_kib / 2);
    assert!(
        growth_kib < bound_kib,
        "the gateway grew by {growth_kib} KiB (bound {bound_kib} KiB) while {sent_kib} KiB went to a client that reads nothing"
    );
    drop(stream);
}
