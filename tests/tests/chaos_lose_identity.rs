//! Losing every identity gateway leaves the business domain untouched.

mod support;

use std::time::{Duration, Instant};

use mesh_tests::load::{self, Spec};
use reqwest::Method;
use support::chaos::Chaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_identity_gateway_leaves_business_untouched() {
    let mut chaos = Chaos::start().await;
    let token = chaos.token("isolation@example.com").await;
    load::assert_loopback(chaos.router.addr.ip());

    let business_load = |chaos: &Chaos| {
        let (http, base, token) = (chaos.http.clone(), chaos.base.clone(), token.clone());
        let spec = Spec { workers: 4, duration: Duration::from_secs(4), max_requests: 100_000 };
        load::run(spec, move |_| {
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
    };
    let before = business_load(&chaos).await;
    println!("business before: {}", before.summary());
    assert!(before.failed().is_empty());

    for gateway in &mut chaos.identity {
        gateway.kill().await;
    }
    // The first identity requests find the dead instances and eject them.
    assert!(
        chaos.wait_healthy_after_traffic("identity", 0).await,
        "the dead identity gateways were not ejected"
    );

    // Identity keeps being asked (and refused) while business is measured again.
    let (http, base, token2) = (chaos.http.clone(), chaos.base.clone(), token.clone());
    let identity_traffic = tokio::spawn(async move {
        let mut worst = Duration::ZERO;
        let mut statuses = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let res = http.get(format!("{base}/v1/users/me")).bearer_auth(&token2).send().await.unwrap();
            worst = worst.max(started.elapsed());
            let status = res.status().as_u16();
            let retry_after = res.headers().contains_key("retry-after");
            let problem = res.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
            statuses.push((status, retry_after, problem));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (worst, statuses)
    });
    let after = business_load(&chaos).await;
    let (worst_identity, statuses) = identity_traffic.await.unwrap();
    println!("business after losing identity: {}", after.summary());
    println!("identity answers while down: worst latency {worst_identity:?}");
    assert!(
        after.failed().is_empty(),
        "business requests failed: {:?}",
        after.failed().iter().take(5).collect::<Vec<_>>()
    );
    assert!(statuses.iter().all(|(s, r, p)| *s == 503 && *r && *p), "{:?}", &statuses[..5]);
    assert!(worst_identity < Duration::from_millis(50), "identity 503 took {worst_identity:?}");

    let (p99_before, p99_after) =
        (before.latency_quantile(0.99, |_| true), after.latency_quantile(0.99, |_| true));
    println!("business p99 before {p99_before:?}, after {p99_after:?}");
    // Within 20% (plus 2 ms of timer noise on a 2-core machine).
    assert!(
        p99_after <= p99_before.mul_f64(1.2) + Duration::from_millis(2),
        "p99 {p99_before:?} -> {p99_after:?}"
    );

    // An identity route answers at once, without waiting on anything.
    let started = Instant::now();
    let (status, body) = chaos.call(Method::POST, "/v1/auth/login", None, None, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_millis(50));
}
