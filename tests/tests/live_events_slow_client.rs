//! A live events client that reads nothing holds at most its buffer in the gateway, and is
//! dropped once that buffer has stayed full for the stall timeout.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshctl::Kind;
use support::TestMesh;
use support::sse::{analytics_replica, event, metric};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUFFER: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_sse_client_does_not_grow_gateway_memory() {
    let _ = mesh_core::telemetry::metrics_handle();
    let t = TestMesh::start_customised(Default::default(), |opts, _| {
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| {
            cfg.streams.buffer = BUFFER;
            cfg.streams.stall_timeout = Duration::from_secs(1);
        });
        // Events of ~8 KiB fill the buffer fast; the default bound is 4 KiB.
        opts.configure_analytics =
            Arc::new(|cfg: &mut analytics_service::Config| cfg.max_properties_bytes = 64 * 1024);
    })
    .await;
    let (user, token, _) = t.user("live-slow@example.com").await;
    let scrape = || async {
        let text =
            t.http.get(format!("{}/metrics", t.admin_base)).send().await.unwrap().text().await.unwrap();
        (
            metric(&text, "gateway_streams_active"),
            metric(&text, "gateway_stream_buffered_events"),
            metric(&text, "gateway_streams_ended_total{reason=\"client_too_slow\"}"),
        )
    };
    let before = scrape().await;

    // A raw client with a tiny receive window straight to one gateway: it reads the response
    // head, then nothing, so the kernel's buffers fill after a few events and the rest wait in
    // the gateway.
    let gateway = t.mesh.get(Kind::BusinessGateway, 1).addr;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(gateway).await.unwrap();
    let head =
        format!("GET /v1/analytics/live HTTP/1.1\r\nhost: mesh\r\nauthorization: Bearer {token}\r\n\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut first = vec![0u8; 512];
    let n = conn.read(&mut first).await.unwrap();
    let status_line = String::from_utf8_lossy(&first[..n]).lines().next().unwrap_or("").to_owned();
    assert!(status_line.contains("200"), "{status_line}");
    assert!(mesh_tests::wait_until(Duration::from_secs(5), || async { scrape().await.0 > before.0 }).await);

    // Many large events (about 8 KiB each), recorded straight on the analytics replicas.
    let big = "x".repeat(500);
    let properties: Vec<(String, String)> = (0..16).map(|i| (format!("p{i}"), big.clone())).collect();
    let properties: Vec<(&str, &str)> = properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    const EVENTS: usize = 600;
    let started = Instant::now();
    let mut clients = [analytics_replica(&t, 1).await, analytics_replica(&t, 2).await];
    let mut max_buffered = 0.0_f64;
    for n in 0..EVENTS {
        clients[n % 2].record_event(event(&user, "bulk", &properties)).await.expect("recorded");
        if n % 50 == 0 {
            max_buffered = max_buffered.max(scrape().await.1 - before.1);
        }
    }
    let recorded_in = started.elapsed();

    // The stream is dropped: the buffer stayed full past the stall timeout.
    let last = std::sync::Mutex::new((before, max_buffered));
    let dropped = mesh_tests::wait_until(Duration::from_secs(10), || async {
        let now = scrape().await;
        let mut last = last.lock().unwrap();
        *last = (now, last.1.max(now.1 - before.1));
        now.0 == before.0
    })
    .await;
    let (now, max_buffered) = *last.lock().unwrap();
    println!(
        "{EVENTS} events of ~8 KiB in {recorded_in:?}; most buffered in the gateway: {max_buffered} \
         (buffer {BUFFER}); streams active {} -> {}; dropped as too slow: {} -> {}; buffered now {}",
        before.0,
        now.0,
        before.2,
        now.2,
        now.1 - before.1
    );
    assert!(dropped, "the slow stream was never dropped: {now:?}");
    assert!(max_buffered <= BUFFER as f64, "{max_buffered} events buffered for one stream");
    assert!(now.2 > before.2, "counted as too slow");
    drop(conn);
    assert!(
        mesh_tests::wait_until(Duration::from_secs(5), || async { scrape().await.1 <= before.1 }).await,
        "the buffer is freed once the client goes"
    );
}
