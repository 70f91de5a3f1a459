//! A gateway that hangs (SIGSTOP) is timed out, its requests retried elsewhere, and ejected.

mod support;

use std::time::Duration;

use mesh_tests::load::{self, Spec};
use support::chaos::Chaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_hangs_is_timed_out_and_ejected() {
    let chaos = Chaos::start_with(|cfg| cfg.attempt_timeout = Duration::from_secs(1)).await;
    let token = chaos.token("hang@example.com").await;
    load::assert_loopback(chaos.router.addr.ip());
    let victim = chaos.business[0].addr;
    let pid = chaos.business[0].process.as_ref().unwrap().pid();

    let (status_http, status_url) = (chaos.http.clone(), format!("{}/mesh/status", chaos.base));
    let freezer = tokio::spawn(async move {
        // The chaos schedule: the gateway freezes 2 s into the load.
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
        let frozen_at = std::time::Instant::now();
        let ejected = mesh_tests::wait_until(Duration::from_secs(5), || {
            let (http, url) = (status_http.clone(), status_url.clone());
            async move {
                let status: serde_json::Value = http.get(url).send().await.unwrap().json().await.unwrap();
                status["pools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|p| p["instances"].as_array().unwrap().iter())
                    .any(|i| i["addr"] == victim.to_string() && i["healthy"] == false)
            }
        })
        .await;
        ejected.then(|| frozen_at.elapsed())
    });
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
