//! When every instance answers 503, retries stay within the budget: they cannot multiply an
//! outage.

mod support;

use std::time::Duration;

use meshctl::Kind;
use reqwest::Method;
use support::chaos::Chaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_exceed_the_budget() {
    const REQUESTS: u64 = 300;
    let (ratio, min_per_second, window) = (0.2_f32, 1_u32, Duration::from_secs(10));
    let mut chaos = Chaos::start_with(|cfg| {
        cfg.retry.budget_ratio = ratio;
        cfg.retry.budget_min_per_second = min_per_second;
        cfg.retry.budget_window = window;
        cfg.retry.max_attempts = 3;
        // Keep every instance in the pool, so only the budget limits retries.
        cfg.health.consecutive_5xx = u32::MAX;
    })
    .await;
    let token = chaos.token("budget@example.com").await;
    // The user service goes away: both identity gateways answer /v1/users/me with 503.
    chaos.services.get_mut(Kind::User, 1).stop().await.unwrap();
    chaos.services.get_mut(Kind::User, 2).stop().await.unwrap();

    let before = chaos.status().await;
    let attempts_at = |status: &serde_json::Value| -> u64 {
        let pool =
            status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "identity").unwrap().clone();
        pool["instances"].as_array().unwrap().iter().map(|i| i["requests"].as_u64().unwrap()).sum()
    };
    let retries_of = |status: &serde_json::Value| -> (u64, u64) {
        let pool =
            status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "identity").unwrap().clone();
        (pool["retry_budget"]["retries"].as_u64().unwrap(), pool["retry_budget"]["refused"].as_u64().unwrap())
    };
    let mut unavailable = 0;
    for _ in 0..REQUESTS {
        let (status, _) = chaos.call(Method::GET, "/v1/users/me", Some(&token), None, &[]).await;
        unavailable += u64::from(status == 503);
    }
    let after = chaos.status().await;
    let attempts = attempts_at(&after) - attempts_at(&before);
    let (retries, refused) =
        (retries_of(&after).0 - retries_of(&before).0, retries_of(&after).1 - retries_of(&before).1);
    // Requests counted into the budget include the few made before the outage (register, login).
    let bound =
        (f64::from(ratio) * (REQUESTS + 10) as f64) as u64 + u64::from(min_per_second) * window.as_secs() + 1;
    println!(
        "{REQUESTS} requests against a pool answering 503: {attempts} attempts, {retries} retries granted, {refused} refused (bound {bound})"
    );
    assert_eq!(unavailable, REQUESTS, "every request ends in 503");
    assert_eq!(attempts, REQUESTS + retries, "each retry is one more attempt, nothing else");
    assert!(retries <= bound, "{retries} retries exceed the budget of {bound}");
    assert!(refused > 0, "the budget never refused a retry, so it was not tested");
}
