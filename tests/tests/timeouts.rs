//! A timed-out call is a timeout, not an outage to retry: the gateway answers from its
//! fallback inside its own deadline instead of spending the deadline on a second try.

mod support;

use std::time::{Duration, Instant};

use meshctl::Kind;
use support::services_chaos::ServiceChaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_read_is_not_retried_past_its_deadline() {
    // One call to the user service may take 1 s; the whole request 1.5 s. A retry of a
    // timed-out call (another 1 s) would overrun the request and end in the gateway's 504.
    let (call, budget) = (Duration::from_secs(1), Duration::from_millis(1500));
    let chaos =
        ServiceChaos::start_with(|cfg| cfg.request_timeout = call, |cfg| cfg.limits.request_timeout = budget)
            .await;
    let token = chaos.token("hung-user@example.com").await;
    let me = || chaos.http.get(format!("{}/v1/users/me", chaos.base)).bearer_auth(&token).send();
    assert_eq!(me().await.unwrap().status(), 200, "read once: the gateway remembers it");

    // Every user replica hangs (SIGSTOP): calls to it time out.
    for replica in 1..=2 {
        chaos.process(Kind::User, replica).signal("STOP").unwrap();
    }
    let started = Instant::now();
    let answer = me().await.unwrap();
    let took = started.elapsed();
    let (status, fallback) = (answer.status(), answer.headers().get("x-mesh-fallback").cloned());
    for replica in 1..=2 {
        chaos.process(Kind::User, replica).signal("CONT").unwrap();
    }
    println!(
        "hung user service: users/me answered {status} ({fallback:?}) after {took:?} (call deadline {call:?}, request budget {budget:?})"
    );
    assert_eq!(status, 200);
    assert_eq!(fallback.as_ref().map(|v| v.to_str().unwrap()), Some("cache"));
    assert!(took >= call, "it waited for the call's deadline: {took:?}");
    assert!(took < budget, "answered inside the request's budget, not after a retry: {took:?}");
}
