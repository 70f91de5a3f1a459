//! A service's fault is not the gateway's: the router neither retries it on another gateway
//! (which calls the same service) nor holds it against the gateway that relayed it.

mod support;

use std::sync::{Arc, Mutex};

use mesh_core::store::{Store, StoreConfig};
use meshctl::Kind;
use reqwest::Method;
use serde_json::Value;
use support::TestMesh;
use support::chaos::Chaos;

/// Attempts, retries and ejections of the identity pool, from `/mesh/status`.
fn identity_figures(status: &Value) -> (u64, u64, u64) {
    let pool = status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "identity").unwrap();
    let instances = pool["instances"].as_array().unwrap();
    (
        instances.iter().map(|i| i["requests"].as_u64().unwrap()).sum(),
        pool["retry_budget"]["retries"].as_u64().unwrap(),
        instances.iter().map(|i| i["ejections"].as_u64().unwrap()).sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_does_not_retry_a_service_fault_on_another_gateway() {
    const REQUESTS: u64 = 60;
    let mut chaos = Chaos::start().await;
    let token = chaos.token("service-fault@example.com").await;
    // The user service goes away: both identity gateways answer /v1/users/me 503, marked as
    // the service's fault.
    chaos.services.get_mut(Kind::User, 1).stop().await.unwrap();
    chaos.services.get_mut(Kind::User, 2).stop().await.unwrap();
    let before = identity_figures(&chaos.status().await);
    let mut marked = 0;
    for _ in 0..REQUESTS {
        let response =
            chaos.http.get(format!("{}/v1/users/me", chaos.base)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 503);
        marked += u64::from(response.headers().get("x-mesh-fault").is_some_and(|v| v == "service"));
    }
    let status = chaos.status().await;
    let after = identity_figures(&status);
    let (attempts, retries, ejections) = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    println!(
        "user service down: {REQUESTS} requests, {marked} marked x-mesh-fault: service; \
         {attempts} attempts, {retries} retries, {ejections} ejections"
    );
    assert_eq!(marked, REQUESTS);
    assert_eq!(attempts, REQUESTS, "one attempt each: another gateway calls the same service");
    assert_eq!(retries, 0);
    assert_eq!(ejections, 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_fault_never_ejects_a_gateway() {
    let store = Arc::new(Mutex::new(None::<StoreConfig>));
    let seen = store.clone();
    let t = TestMesh::start_customised(Default::default(), move |opts, _| {
        *seen.lock().unwrap() = Some(opts.store.clone());
    })
    .await;
    let (user_id, token, _) = t.user("corrupt@example.com").await;
    // The user service now fails every read of this profile with INTERNAL: its stored record
    // is garbage (no snapshot of it was ever served, so there is no fallback).
    let cfg = store.lock().unwrap().clone().unwrap();
    let raw = Store::connect(&cfg).await.unwrap();
    raw.set(&format!("user:profile:{user_id}"), "{not json", None).await.unwrap();
    let status_of = |t: &TestMesh| {
        let (http, url) = (t.http.clone(), format!("{}/mesh/status", t.admin_base));
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = identity_figures(&status_of(&t).await);
    // Many more than the run of 5xx that ejects a gateway for its own failures.
    const REQUESTS: u64 = 30;
    let mut answers = std::collections::BTreeMap::<u16, u64>::new();
    for _ in 0..REQUESTS {
        let answer = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
        assert_eq!(answer.header("x-mesh-fault"), "service", "{:?}", answer.body);
        *answers.entry(answer.status.as_u16()).or_default() += 1;
    }
    let status = status_of(&t).await;
    let after = identity_figures(&status);
    let pool = status["pools"].as_array().unwrap().iter().find(|p| p["name"] == "identity").unwrap();
    let failures: u64 =
        pool["instances"].as_array().unwrap().iter().map(|i| i["failures"].as_u64().unwrap()).sum();
    println!(
        "a corrupt profile, {REQUESTS} reads: answers {answers:?}, {} attempts, {} ejections, \
         {failures} failures counted against the gateways",
        after.0 - before.0,
        after.2 - before.2
    );
    // 500s until the gateways' breakers for the user service open (they count INTERNAL), then
    // 503s at once: every one the service's fault.
    assert!(answers.keys().all(|s| *s == 500 || *s == 503), "{answers:?}");
    assert!(answers.get(&500).is_some_and(|n| *n >= 5), "{answers:?}");
    assert_eq!(after.2 - before.2, 0, "{status}");
    assert_eq!(failures, 0);
    assert!(pool["instances"].as_array().unwrap().iter().all(|i| i["healthy"] == true));
}
