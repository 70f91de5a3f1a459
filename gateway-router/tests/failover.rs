//! The router's failover decisions, read from the one failure model: what it retries, on which
//! budget, and what it holds against an instance. The router binary runs as a process in
//! front of two stand-in gateways.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Attempts and retry-budget figures of the identity pool, from `/mesh/status`.
fn identity_figures(status: &Value) -> (u64, u64, u64, u64) {
    let pool = status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "identity").unwrap();
    let instances = pool["instances"].as_array().unwrap();
    let attempts = instances.iter().map(|i| i["requests"].as_u64().unwrap()).sum();
    let ejections = instances.iter().map(|i| i["ejections"].as_u64().unwrap()).sum();
    let budget = &pool["retry_budget"];
    (attempts, budget["retries"].as_u64().unwrap(), budget["refused"].as_u64().unwrap(), ejections)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_exceed_the_budget() {
    const REQUESTS: u64 = 300;
    let (ratio, min_per_second, window) = (0.2_f64, 1_u64, Duration::from_secs(10));
    let (a, b) = (upstream().await, upstream().await);
    let router = router_over(
        &[a.addr, b.addr],
        &[
            ("MESH_RETRY__BUDGET_RATIO", "0.2"),
            ("MESH_RETRY__BUDGET_MIN_PER_SECOND", "1"),
            ("MESH_RETRY__BUDGET_WINDOW", "10s"),
            ("MESH_RETRY__MAX_ATTEMPTS", "3"),
            ("MESH_LIMITS__PER_CLIENT_RPS", "0"),
            // Keep every instance in the pool, so only the budget limits retries.
            ("MESH_HEALTH__CONSECUTIVE_5XX", "4294967295"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let before = identity_figures(&status(&router).await);
    let started = Instant::now();
    let mut unavailable = 0;
    for _ in 0..REQUESTS {
        let status = http.get(format!("http://{}/v1/users/down", router.addr)).send().await.unwrap().status();
        unavailable += u64::from(status == 503);
    }
    let elapsed = started.elapsed();
    let after = identity_figures(&status(&router).await);
    let (attempts, retries, refused) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    // The budget (tower's TpsBudget): a reserve of min_per_second × window that refills as
    // the window slides, plus ratio × the requests deposited within it. Over a run of
    // `elapsed`, at most the reserve once, its refill over the run, and the ratio of every
    // request; one more for a withdrawal straddling a window slot.
    let refill = min_per_second as f64 * elapsed.as_secs_f64().ceil();
    let bound = (ratio * REQUESTS as f64 + (min_per_second * window.as_secs()) as f64 + refill) as u64 + 1;
    println!(
        "{REQUESTS} requests in {elapsed:?} against a pool whose instances answer their own 503: \
         {attempts} attempts, {retries} retries granted, {refused} refused (bound {bound})"
    );
    assert_eq!(unavailable, REQUESTS, "every request ends in 503");
    assert_eq!(attempts, REQUESTS + retries, "each retry is one more attempt, nothing else");
    assert!(retries <= bound, "{retries} retries exceed the budget of {bound}");
    assert!(retries > 0, "the gateways' own 503s are retried");
    assert!(refused > 0, "the budget never refused a retry, so it was not tested");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_fault_is_not_retried_on_another_gateway_nor_held_against_one() {
    const REQUESTS: u64 = 50;
    let (a, b) = (upstream().await, upstream().await);
    let router = router_over(&[a.addr, b.addr], &[("MESH_LIMITS__PER_CLIENT_RPS", "0")]).await;
    let http = reqwest::Client::new();
    let before = identity_figures(&status(&router).await);
    for _ in 0..REQUESTS {
        let status =
            http.get(format!("http://{}/v1/users/relayed", router.addr)).send().await.unwrap().status();
        assert_eq!(status, 503);
    }
    let status = status(&router).await;
    let after = identity_figures(&status);
    let (attempts, retries, ejections) = (after.0 - before.0, after.1 - before.1, after.3 - before.3);
    println!(
        "{REQUESTS} requests answered 503 with x-mesh-fault: service: {attempts} attempts, {retries} retries, {ejections} ejections"
    );
    assert_eq!(attempts, REQUESTS, "the other gateway calls the same service: no retry");
    assert_eq!(retries, 0);
    assert_eq!(ejections, 0, "a service's fault is not the gateway's: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateways_own_failures_after_a_complete_request_still_eject_it() {
    // The other side of "client-caused failures are the client's": a POST whose body was
    // complete, answered with the gateway's own 503, counts; a run of them ejects the gateway.
    let (a, b) = (upstream().await, upstream().await);
    let router = router_over(&[a.addr, b.addr], &[("MESH_LIMITS__PER_CLIENT_RPS", "0")]).await;
    let http = reqwest::Client::new();
    for _ in 0..12 {
        let answer = http
            .post(format!("http://{}/v1/users/down", router.addr))
            .header("content-type", "application/json")
            .body(r#"{"a":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 503);
    }
    let status = status(&router).await;
    let (_, _, _, ejections) = identity_figures(&status);
    println!("12 complete POSTs answered the gateways' own 503: {ejections} ejections");
    assert!(ejections >= 1, "a gateway failing complete requests is ejected: {status}");
}
