//! A live events client whose business gateway goes away mid-stream sees its stream end, and resumes
//! through the router on the other gateway with `Last-Event-ID`: nothing twice, nothing missed.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use support::TestMesh;
use support::sse::{SseEvent, SseStream, analytics_replica, event};

const LIVE: &str = "/v1/analytics/live";
/// Events read before the gateway dies, and recorded while the client is away.
const BEFORE: u32 = 3;
const MISSED: u32 = 4;

/// The `n` property of an event's data.
fn n(event: &SseEvent) -> u32 {
    let data: serde_json::Value = serde_json::from_str(&event.data).expect("data is JSON");
    data["properties"]["n"].as_str().and_then(|n| n.parse().ok()).expect("an n property")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_gateway_mid_stream_lets_the_client_resume_from_last_event_id() {
    let mut t = TestMesh::start().await;
    let (user, token, _) = t.user("live-resume@example.com").await;
    // Recorded straight on an analytics replica, so no write depends on which gateway is alive.
    let mut analytics = analytics_replica(&t, 1).await;

    let mut stream = SseStream::open(&t.base, LIVE, &token, &[]).await;
    let serving = stream.response.headers()["x-mesh-gateway"].to_str().unwrap().to_owned();
    let victim = (1..=2)
        .find(|&r| t.mesh.get(Kind::BusinessGateway, r).name() == serving)
        .unwrap_or_else(|| panic!("no business gateway is named {serving}"));

    for i in 1..=BEFORE {
        analytics.record_event(event(&user, "tick", &[("n", &i.to_string())])).await.expect("recorded");
    }
    let mut seen = Vec::new();
    for _ in 1..=BEFORE {
        seen.push(stream.next(Duration::from_secs(5)).await.expect("an event before the gateway stops"));
    }
    assert_eq!(seen.iter().map(n).collect::<Vec<_>>(), (1..=BEFORE).collect::<Vec<_>>());
    let last_id = seen.last().unwrap().id.clone();

    // The gateway goes away with the stream open. `Component::kill` aborts only the accept loop of
    // an in-process gateway: its connection tasks live on, so the stream would too. A drain is the
    // way a gateway ends open streams (it closes them first, then exits).
    let stopping = Instant::now();
    let (stopped, ended) = tokio::join!(
        t.mesh.get_mut(Kind::BusinessGateway, victim).stop(),
        stream.ends_within(Duration::from_secs(5))
    );
    let time_to_end = stopping.elapsed();
    stopped.expect("the gateway drained");
    assert!(ended, "the stream outlived its gateway for 5 s");

    for i in BEFORE + 1..=BEFORE + MISSED {
        analytics.record_event(event(&user, "tick", &[("n", &i.to_string())])).await.expect("recorded");
    }

    // The client reconnects at once; the router sends it to the gateway that is left.
    let reconnecting = Instant::now();
    let mut resumed = SseStream::open(&t.base, LIVE, &token, &[("last-event-id", last_id.as_str())]).await;
    let time_to_reconnect = reconnecting.elapsed();
    let now_serving = resumed.response.headers()["x-mesh-gateway"].to_str().unwrap().to_owned();
    assert_ne!(now_serving, serving, "served by the dead gateway");
    let mut after = Vec::new();
    for _ in 1..=MISSED {
        after.push(resumed.next(Duration::from_secs(5)).await.expect("a missed event"));
    }
    assert_eq!(resumed.next(Duration::from_millis(500)).await, None, "more than the missed events");
    let ids: Vec<&str> = after.iter().map(|e| e.id.as_str()).collect();
    assert!(ids.iter().all(|id| !seen.iter().any(|s| s.id == *id)), "a duplicate: {ids:?}");
    assert_eq!(after.iter().map(n).collect::<Vec<_>>(), (BEFORE + 1..=BEFORE + MISSED).collect::<Vec<_>>());
    println!(
        "events before the stop {BEFORE} (last id {last_id}), missed and resumed {}, stream ended \
         {time_to_end:?} after {serving} was stopped, reconnect through the router to {now_serving} \
         took {time_to_reconnect:?}",
        after.len()
    );

    // The resumed stream is live, not just a replay.
    let live = BEFORE + MISSED + 1;
    analytics.record_event(event(&user, "tick", &[("n", &live.to_string())])).await.expect("recorded");
    assert_eq!(resumed.next(Duration::from_secs(5)).await.as_ref().map(n), Some(live));
}
