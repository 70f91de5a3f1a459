//! Losing every identity gateway leaves the business domain untouched.

mod support;

use std::time::{Duration, Instant};

use mesh_tests::load::{self, Report, Spec};
use reqwest::Method;
use support::chaos::Chaos;

/// How long each phase measures. Long enough that one scheduler stall on the 2-core machine,
/// which delays every in-flight request of the 4 workers at once, stays under 1% of a phase's
/// ~1000 samples and cannot move its p99 by itself (with 5 s phases, one stall was 1% of 500
/// and failed a clean-clone run: 83 → 148 ms).
const PHASE: Duration = Duration::from_secs(10);

/// Business load for one phase, with identity traffic beside it at a steady pace (so both
/// phases carry the same side traffic: served before, refused after). Returns the business
/// report and, per identity request, (status, latency, has Retry-After, is problem+json).
async fn phase(chaos: &Chaos, token: &str) -> (Report, Vec<(u16, Duration, bool, bool)>) {
    let (http, base, token2) = (chaos.http.clone(), chaos.base.clone(), token.to_owned());
    let identity = tokio::spawn(async move {
        let mut answers = Vec::new();
        let until = Instant::now() + PHASE;
        while Instant::now() < until {
            let started = Instant::now();
            let res = http.get(format!("{base}/v1/users/me")).bearer_auth(&token2).send().await.unwrap();
            let took = started.elapsed();
            let retry_after = res.headers().contains_key("retry-after");
            let problem = res.headers().get("content-type").is_some_and(|v| v == "application/problem+json");
            answers.push((res.status().as_u16(), took, retry_after, problem));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        answers
    });
    let (http, base, token) = (chaos.http.clone(), chaos.base.clone(), token.to_owned());
    let spec = Spec { workers: 4, duration: PHASE, max_requests: 100_000 };
    let business = load::run(spec, move |_| {
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
    (business, identity.await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_every_identity_gateway_leaves_business_untouched() {
    let mut chaos = Chaos::start().await;
    let token = chaos.token("isolation@example.com").await;
    load::assert_loopback(chaos.router.addr.ip());

    // A warm-up phase first, so neither measured phase pays for opening connections.
    let _ = phase(&chaos, &token).await;
    let (before, identity_before) = phase(&chaos, &token).await;
    println!("business before: {}", before.summary());
    assert!(before.failed().is_empty());
    assert!(identity_before.iter().all(|(s, ..)| *s == 200), "identity works before the kill");

    for gateway in &mut chaos.identity {
        gateway.kill().await;
    }
    // The first identity requests find the dead instances and eject them.
    assert!(
        chaos.wait_healthy_after_traffic("identity", 0).await,
        "the dead identity gateways were not ejected"
    );

    let (after, identity_after) = phase(&chaos, &token).await;
    let worst_identity = identity_after.iter().map(|(_, took, ..)| *took).max().unwrap();
    println!("business after losing identity: {}", after.summary());
    println!("{} identity answers while down: worst latency {worst_identity:?}", identity_after.len());
    assert!(
        after.failed().is_empty(),
        "business requests failed: {:?}",
        after.failed().iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        identity_after.iter().all(|(s, _, r, p)| *s == 503 && *r && *p),
        "identity must answer 503 problem+json with Retry-After: {:?}",
        &identity_after[..5.min(identity_after.len())]
    );
    // "At once": the 99th percentile well under 50 ms while business load runs beside it on
    // two cores, and no answer anywhere near a timeout (a single scheduler stall can put one
    // sample past 50 ms; a hang would take the attempt timeout, seconds).
    let mut took: Vec<Duration> = identity_after.iter().map(|(_, took, ..)| *took).collect();
    took.sort();
    let p99_identity = took[((took.len() - 1) as f64 * 0.99).round() as usize];
    println!("identity 503 p99 {p99_identity:?}");
    assert!(p99_identity < Duration::from_millis(50), "identity 503 p99 {p99_identity:?}");
    assert!(worst_identity < Duration::from_millis(500), "an identity 503 took {worst_identity:?}");

    let (p99_before, p99_after) =
        (before.latency_quantile(0.99, |_| true), after.latency_quantile(0.99, |_| true));
    println!("business p99 before {p99_before:?}, after {p99_after:?}");
    // Within 20%, plus 5 ms of scheduling noise on a 2-core machine running everything.
    assert!(
        p99_after <= p99_before.mul_f64(1.2) + Duration::from_millis(5),
        "p99 {p99_before:?} -> {p99_after:?}"
    );

    // An identity route answers at once, without waiting on anything.
    let started = Instant::now();
    let (status, body) = chaos.call(Method::POST, "/v1/auth/login", None, None, &[]).await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < Duration::from_millis(50));
}
