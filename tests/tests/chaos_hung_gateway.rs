//! A gateway that hangs (SIGSTOP) is timed out, its requests retried elsewhere, and ejected.

mod support;

use std::time::Duration;

use mesh_tests::load::{self, Spec};
use support::chaos::{Chaos, signal_later_and_time_ejection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_hangs_is_timed_out_and_ejected() {
    let chaos = Chaos::start_with(|cfg| cfg.attempt_timeout = Duration::from_secs(1)).await;
    let token = chaos.token("hang@example.com").await;
    load::assert_loopback(chaos.router.addr.ip());
    let victim = chaos.business[0].addr;
    let pid = chaos.business[0].process.as_ref().unwrap().pid();

    // The chaos schedule: the signal lands 2 s into the load.
    let freezer = signal_later_and_time_ejection(
        chaos.http.clone(),
        chaos.admin_base.clone(),
        pid,
        "STOP",
        Duration::from_secs(2),
        victim,
    );
    let (http, base) = (chaos.http.clone(), chaos.base.clone());
    let spec = Spec { workers: 4, duration: Duration::from_secs(6), max_requests: 100_000 };
    let report = load::run(spec, move |_| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let status =
                match http.get(format!("{base}/v1/articles?limit=5")).bearer_auth(&token).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
            ("GET /v1/articles", status)
        }
    })
    .await;
    let time_to_eject = freezer.await.unwrap().expect("the hung gateway was not ejected within 5 s");
    println!("hung gateway: {}; ejected {time_to_eject:?} after SIGSTOP", report.summary());
    println!("slowest request: {:?}", report.latency_quantile(1.0, |_| true));
    assert!(report.failed().is_empty(), "{:?}", report.failed().iter().take(5).collect::<Vec<_>>());
    assert!(time_to_eject < Duration::from_secs(2), "{time_to_eject:?}");

    chaos.business[0].signal("CONT");
    assert!(chaos.wait_healthy("business", 2).await, "the resumed gateway was not admitted again");
}
