//! Killing one identity gateway under load loses no request, and the router ejects it and
//! admits it again when it is back.

mod support;

use std::time::Duration;

use mesh_tests::load::{self, Spec};
use support::chaos::{Chaos, mixed_request, signal_later_and_time_ejection};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_identity_gateway_under_load_loses_no_request() {
    let mut chaos = Chaos::start().await;
    let token = chaos.token("load@example.com").await;
    let article = chaos.article().await;
    load::assert_loopback(chaos.router.addr.ip());

    let victim = chaos.identity[0].addr;
    let pid = chaos.identity[0].process.as_ref().unwrap().pid();
    // The chaos schedule: the signal lands 3 s into the load.
    let killer = signal_later_and_time_ejection(
        chaos.http.clone(),
        chaos.admin_base.clone(),
        pid,
        "KILL",
        Duration::from_secs(3),
        victim,
    );
    let (http, base) = (chaos.http.clone(), chaos.base.clone());
    let spec = Spec { workers: 8, duration: Duration::from_secs(10), max_requests: 200_000 };
    let report = load::run(spec, move |n| {
        let (http, base, token, article) = (http.clone(), base.clone(), token.clone(), article.clone());
        async move { mixed_request(&http, &base, &token, &article, n).await }
    })
    .await;
    let time_to_eject = killer.await.unwrap().expect("the killed gateway was not ejected within 5 s");
    println!("killed gateway ejected {time_to_eject:?} after the kill");
    let killed = chaos.identity[0].process.as_mut().unwrap().wait_exit(Duration::from_secs(5)).await.unwrap();
    assert!(!killed.success(), "the gateway was really killed");
    println!("kill one identity gateway at 3 s of 10 s: {}", report.summary());
    let failed: Vec<_> = report.failed().iter().map(|s| (s.at, s.label, s.status)).take(20).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // Ejected by now, and admitted again once it is back.
    assert_eq!(
        chaos.instance_healthy("identity", victim).await,
        Some(false),
        "the dead instance is still in the pool"
    );
    let _ = chaos.identity[0].process.take();
    let restarted = std::time::Instant::now();
    chaos.identity[0].restart();
    assert!(chaos.wait_healthy("identity", 2).await, "the restarted gateway was not admitted again");
    println!("restarted gateway admitted after {:?}", restarted.elapsed());
    let status = chaos.status().await;
    println!("retry budget after the run: {}", status["pools"]);
}
