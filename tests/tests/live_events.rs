//! Live analytics events (`GET /v1/analytics/live`): server-sent events through the router,
//! across replicas, private to their owner, resumable, capped, and not cut by request timeouts.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshctl::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::TestMesh;
use support::sse::{SseStream, analytics_replica, event};

const LIVE: &str = "/v1/analytics/live";
/// Latency samples per path beyond the first event.
const ROUNDS: usize = 6;

fn data(event: &support::sse::SseEvent) -> Value {
    serde_json::from_str(&event.data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {event:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_recorded_on_one_replica_reaches_a_watcher_through_the_router_within_100ms() {
    let t = TestMesh::start().await;
    let (user, token, _) = t.user("live-latency@example.com").await;
    // A client that accepts gzip still gets an uncompressed stream: a compressor would buffer it.
    let mut stream = SseStream::open(&t.base, LIVE, &token, &[("accept-encoding", "gzip")]).await;
    let headers = stream.response.headers().clone();
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/event-stream"), "{headers:?}");
    assert!(headers.get("content-encoding").is_none(), "{headers:?}");

    // Through the public API: the event goes to whichever gateway and analytics replica.
    let body = json!({"type": "page.view", "properties": {"path": "/home"}});
    let sent = Instant::now();
    let (posted, (arrived, at)) =
        tokio::join!(t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(body)), async {
            (stream.next(Duration::from_secs(5)).await, Instant::now())
        });
    assert_eq!(posted.status, StatusCode::ACCEPTED, "{:?}", posted.body);
    let arrived = arrived.expect("the event reached the watcher");
    let mut latencies = vec![
        ("POST through the router", vec![at - sent]),
        ("gRPC on analytics-1", vec![]),
        ("gRPC on analytics-2", vec![]),
    ];
    assert_eq!(arrived.event, "page.view");
    assert!(!arrived.id.is_empty(), "an id: line for Last-Event-ID");
    let got = data(&arrived);
    assert_eq!(got["id"], posted.body["id"], "{got}");
    assert_eq!(got["type"], "page.view");
    assert_eq!(got["properties"]["path"], "/home");
    assert_eq!(got["recorded_at"], posted.body["recorded_at"]);

    // More rounds, for figures that do not hang on one scheduling hiccup of a busy machine: over
    // the API, and straight on each analytics replica (whichever one serves the watch, half of
    // those cross replicas through the store).
    for round in 0..ROUNDS {
        let body = json!({"type": "page.view"});
        let sent = Instant::now();
        let (posted, (arrived, at)) =
            tokio::join!(t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(body)), async {
                (stream.next(Duration::from_secs(5)).await, Instant::now())
            });
        assert_eq!(posted.status, StatusCode::ACCEPTED, "{:?}", posted.body);
        assert_eq!(data(&arrived.expect("the event reached the watcher"))["id"], posted.body["id"]);
        latencies[0].1.push(at - sent);

        let replica = 1 + (round % 2) as u16;
        let mut client = analytics_replica(&t, replica).await;
        let kind = format!("replica.{replica}");
        let sent = Instant::now();
        let (recorded, (arrived, at)) = tokio::join!(client.record_event(event(&user, &kind, &[])), async {
            (stream.next(Duration::from_secs(5)).await, Instant::now())
        });
        recorded.expect("recorded");
        assert_eq!(arrived.expect("the event reached the watcher").event, kind);
        latencies[replica as usize].1.push(at - sent);
    }
    for (how, samples) in &mut latencies {
        samples.sort();
        let ms: Vec<String> = samples.iter().map(|l| format!("{:.1}", l.as_secs_f64() * 1000.0)).collect();
        println!(
            "live event latency, {how}: median {:?}, all (ms) {}",
            samples[samples.len() / 2],
            ms.join(" ")
        );
    }
    for (how, samples) in latencies {
        assert!(samples[samples.len() / 2] < Duration::from_millis(100), "{how}: {samples:?}");
        assert!(samples.iter().all(|l| *l < Duration::from_secs(1)), "{how}: {samples:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_watcher_sees_only_its_own_events_of_the_asked_type_and_resumes_after_last_event_id() {
    let t = TestMesh::start().await;
    let (_, alice, _) = t.user("live-alice@example.com").await;
    let (_, bob, _) = t.user("live-bob@example.com").await;
    let mesh = &t;
    let record = |token: &str, kind: &str, n: u32| {
        let body = json!({"type": kind, "properties": {"n": n.to_string()}});
        let token = token.to_owned();
        async move {
            let answer = mesh.call(Method::POST, "/v1/analytics/events", Some(&token), Some(body)).await;
            assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
        }
    };

    let mut bobs = SseStream::open(&t.base, LIVE, &bob, &[]).await;
    let mut alices = SseStream::open(&t.base, LIVE, &alice, &[]).await;
    let mut alices_signups = SseStream::open(&t.base, &format!("{LIVE}?type=signup"), &alice, &[]).await;
    for n in 1..=3 {
        record(&alice, "page.view", n).await;
    }
    record(&alice, "signup", 4).await;

    let mut seen = Vec::new();
    for _ in 1..=4 {
        seen.push(alices.next(Duration::from_secs(5)).await.expect("alice sees her event"));
    }
    let ns: Vec<Value> = seen.iter().map(|e| data(e)["properties"]["n"].clone()).collect();
    assert_eq!(ns, [json!("1"), json!("2"), json!("3"), json!("4")], "in order");
    let signup = alices_signups.next(Duration::from_secs(5)).await.expect("the filtered stream");
    assert_eq!((signup.event.as_str(), signup.id.as_str()), ("signup", seen[3].id.as_str()));
    assert_eq!(alices_signups.next(Duration::from_millis(300)).await, None, "only signups");
    // Bob has had all that time: nothing of Alice's reaches him.
    assert_eq!(bobs.next(Duration::from_millis(500)).await, None, "another user's events leak");

    // Alice goes away after the first event, misses two more, and comes back with its id.
    drop(alices);
    record(&alice, "page.view", 5).await;
    let mut resumed = SseStream::open(&t.base, LIVE, &alice, &[("last-event-id", seen[0].id.as_str())]).await;
    let mut again = Vec::new();
    for _ in 2..=5 {
        again.push(
            data(&resumed.next(Duration::from_secs(5)).await.expect("resumed"))["properties"]["n"].clone(),
        );
    }
    assert_eq!(again, [json!("2"), json!("3"), json!("4"), json!("5")]);

    let bad = SseStream::request(&t.base, LIVE, &alice, &[("last-event-id", "nope")]).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unauthenticated = t.call(Method::GET, LIVE, None, None).await;
    unauthenticated.assert_problem(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_stream_past_the_per_user_cap_is_refused_with_429_and_a_freed_slot_is_reusable() {
    let t = TestMesh::start_customised(Default::default(), |opts, _| {
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| cfg.streams.per_principal = 2);
    })
    .await;
    let (_, alice, _) = t.user("live-cap-alice@example.com").await;
    let (_, bob, _) = t.user("live-cap-bob@example.com").await;
    let gateway = format!("http://{}", t.mesh.get(Kind::BusinessGateway, 1).addr);

    let first = SseStream::open(&gateway, LIVE, &alice, &[]).await;
    let _second = SseStream::open(&gateway, LIVE, &alice, &[]).await;
    let refused = SseStream::request(&gateway, LIVE, &alice, &[]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let headers = refused.headers().clone();
    assert_eq!(headers["content-type"], "application/problem+json");
    assert!(headers.contains_key("retry-after"));
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["instance"].as_str().unwrap(), headers["x-request-id"].to_str().unwrap());
    println!("refused: {problem}");

    let _bobs = SseStream::open(&gateway, LIVE, &bob, &[]).await;

    drop(first);
    let reopened = mesh_tests::wait_until(Duration::from_secs(5), || async {
        SseStream::request(&gateway, LIVE, &alice, &[]).await.status() == StatusCode::OK
    })
    .await;
    assert!(reopened, "closing a stream gives its slot back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_user_stream_cap_holds_across_gateways() {
    let t = TestMesh::start_customised(Default::default(), |opts, _| {
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| cfg.streams.per_principal = 2);
    })
    .await;
    let (_, alice, _) = t.user("live-cap-across@example.com").await;
    let one = format!("http://{}", t.mesh.get(Kind::BusinessGateway, 1).addr);
    let two = format!("http://{}", t.mesh.get(Kind::BusinessGateway, 2).addr);

    // One stream on each gateway spends the cap of two: the store holds the user's leases.
    let on_one = SseStream::open(&one, LIVE, &alice, &[]).await;
    let _on_two = SseStream::open(&two, LIVE, &alice, &[]).await;
    let refused = [
        SseStream::request(&one, LIVE, &alice, &[]).await.status(),
        SseStream::request(&two, LIVE, &alice, &[]).await.status(),
        SseStream::request(&t.base, LIVE, &alice, &[]).await.status(),
    ];
    println!(
        "with 2 streams open (one per gateway, cap 2): gateway 1, gateway 2, router answered {refused:?}"
    );
    assert_eq!(refused, [StatusCode::TOO_MANY_REQUESTS; 3]);

    // Closing the stream on gateway 1 frees a lease that gateway 2 can use.
    drop(on_one);
    let reopened = mesh_tests::wait_until(Duration::from_secs(5), || async {
        SseStream::request(&two, LIVE, &alice, &[]).await.status() == StatusCode::OK
    })
    .await;
    assert!(reopened, "a lease freed on one gateway is usable on the other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_outlives_the_request_timeout_and_the_router_attempt_timeout() {
    let limit = Duration::from_millis(1500);
    let t = TestMesh::start_customised(Default::default(), move |opts, _| {
        opts.configure_gateway = Arc::new(move |cfg: &mut gateway::Config| {
            cfg.limits.request_timeout = limit;
            cfg.streams.keep_alive = Duration::from_millis(200);
        });
        opts.configure_router = Arc::new(move |cfg: &mut gateway_router::Config| cfg.attempt_timeout = limit);
    })
    .await;
    let (_, token, _) = t.user("live-long@example.com").await;
    let mut stream = SseStream::open(&t.base, LIVE, &token, &[]).await;
    let opened = Instant::now();
    // Nothing to read for twice both limits: only keep-alive comments arrive meanwhile.
    assert_eq!(stream.next(limit * 2).await, None);
    assert!(stream.comments >= 3, "keep-alives every 200ms: {}", stream.comments);

    let body = json!({"type": "late.event"});
    let answer = t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(body)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let late = stream.next(Duration::from_secs(5)).await.expect("the stream is still open");
    assert_eq!(late.event, "late.event");
    println!("stream alive after {:?} (limits {limit:?}), {} keep-alives", opened.elapsed(), stream.comments);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_open_stream_ends_promptly_when_its_gateway_drains() {
    let mut t = TestMesh::start().await;
    let (_, token, _) = t.user("live-drain@example.com").await;
    let gateway = format!("http://{}", t.mesh.get(Kind::BusinessGateway, 1).addr);

    // Streams never end by themselves: the drain ends them rather than waiting for its timeout.
    let mut stream = SseStream::open(&gateway, LIVE, &token, &[]).await;
    let started = Instant::now();
    t.mesh.get_mut(Kind::BusinessGateway, 1).stop().await.unwrap();
    let drained = started.elapsed();
    assert!(stream.ends_within(Duration::from_secs(2)).await, "the stream outlived its gateway");
    println!("gateway drained with an open stream in {drained:?}");
    assert!(drained < Duration::from_secs(5), "{drained:?}");
}
