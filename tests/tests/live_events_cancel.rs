//! A live events client that goes away cancels the watch all the way to the analytics service.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::TestMesh;
use support::sse::{SseStream, metric};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_disconnect_cancels_the_upstream_stream() {
    // One recorder for the whole in-process mesh; installed before anything records.
    let _ = mesh_core::telemetry::metrics_handle();
    let t = TestMesh::start().await;
    let (_, token, _) = t.user("live-cancel@example.com").await;
    let scrape = || async {
        let text =
            t.http.get(format!("{}/metrics", t.admin_base)).send().await.unwrap().text().await.unwrap();
        (
            metric(&text, "analytics_watchers_cancelled_total"),
            metric(&text, "analytics_watchers_active"),
            metric(&text, "gateway_streams_active"),
        )
    };
    let before = scrape().await;

    let mut stream = SseStream::open(&t.base, "/v1/analytics/live", &token, &[]).await;
    // The watch is live end to end: an event goes through.
    let answer =
        t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(json!({"type": "ping"}))).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert!(stream.next(Duration::from_secs(5)).await.is_some());
    let during = scrape().await;
    assert_eq!((during.1, during.2), (before.1 + 1.0, before.2 + 1.0), "one watcher, one stream");

    drop(stream);
    let last = std::sync::Mutex::new(during);
    let cancelled = mesh_tests::wait_until(Duration::from_secs(5), || async {
        let now = scrape().await;
        *last.lock().unwrap() = now;
        now.0 > before.0 && now.1 == before.1 && now.2 == before.2
    })
    .await;
    let after = *last.lock().unwrap();
    println!(
        "cancelled watchers {} -> {}, active watchers {} -> {} -> {}, gateway streams {} -> {} -> {}",
        before.0, after.0, before.1, during.1, after.1, before.2, during.2, after.2
    );
    assert!(cancelled, "the analytics watch was not cancelled: {after:?}");
}
