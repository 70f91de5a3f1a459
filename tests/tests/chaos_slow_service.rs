//! A service that hangs (SIGSTOP) is cut off by the call deadline, and after a few such
//! failures its breaker opens so further calls fail at once instead of waiting.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use serde_json::json;
use support::services_chaos::ServiceChaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_service_is_cut_off_by_its_deadline_and_trips_the_breaker() {
    let deadline = Duration::from_millis(500);
    let chaos = ServiceChaos::start(|cfg| {
        cfg.request_timeout = deadline;
        // Health watching would also take a hung replica out; a long keep-alive leaves the
        // breaker as the only defence, which is what this test is about.
        cfg.health_keepalive = Duration::from_secs(60);
        cfg.breaker.consecutive_failures = 3;
        cfg.breaker.open_for = Duration::from_secs(1);
    })
    .await;
    let token = chaos.token("slow@example.com").await;
    let record = || async {
        let started = Instant::now();
        let res = chaos
            .http
            .post(format!("{}/v1/analytics/events", chaos.base))
            .bearer_auth(&token)
            .json(&json!({"type": "click"}))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), started.elapsed())
    };
    assert_eq!(record().await.0, 202, "analytics works before the freeze");

    for replica in 1..=2 {
        chaos.process(Kind::Analytics, replica).signal("STOP").unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..8 {
        answers.push(record().await);
    }
    println!("answers while analytics is frozen: {answers:?}");
    let (cut_off, fast): (Vec<_>, Vec<_>) = answers.iter().partition(|(_, took)| *took >= deadline);
    assert!(!cut_off.is_empty(), "no call waited for the deadline");
    for (status, took) in &cut_off {
        assert_eq!(*status, 504, "a call cut off by its deadline is a 504");
        assert!(*took < deadline * 3, "cut off late: {took:?}");
    }
    assert!(cut_off.len() <= 3, "the breaker did not open after 3 failures: {answers:?}");
    assert!(fast.len() >= 5, "{answers:?}");
    for (status, took) in &fast {
        assert_eq!(*status, 503, "an open breaker answers 503");
        assert!(*took < Duration::from_millis(100), "{took:?}");
    }

    for replica in 1..=2 {
        chaos.process(Kind::Analytics, replica).signal("CONT").unwrap();
    }
    let recovered =
        mesh_tests::wait_until(Duration::from_secs(10), || async { record().await.0 == 202 }).await;
    assert!(recovered, "the breaker never closed again after the service came back");
}
