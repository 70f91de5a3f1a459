//! Killing one replica of each service under load loses no request.

mod support;

use std::time::Duration;

use mesh_tests::load::{self, Spec};
use meshctl::Kind;
use support::services_chaos::ServiceChaos;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_replica_of_each_service_under_load_loses_no_request() {
    let chaos = std::sync::Arc::new(ServiceChaos::start(|_| {}).await);
    let token = chaos.token("svc-load@example.com").await;
    let article = chaos.article().await;
    load::assert_loopback(chaos.router.addr.ip());

    let pids: Vec<u32> = Kind::SERVICES.iter().map(|k| chaos.process(*k, 1).pid()).collect();
    let killer = tokio::spawn(async move {
        // The chaos schedule: one replica of every service dies 3 s into the load.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for pid in pids {
            std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
        }
    });
    let load_chaos = chaos.clone();
    let spec = Spec { workers: 8, duration: Duration::from_secs(10), max_requests: 200_000 };
    let report = load::run(spec, move |n| {
        let (chaos, token, article) = (load_chaos.clone(), token.clone(), article.clone());
        async move { chaos.mixed(&token, &article, n).await }
    })
    .await;
    killer.await.unwrap();
    println!("one replica of each service killed at 3 s of 10 s: {}", report.summary());
    let after_kill: Vec<_> = report.samples.iter().filter(|s| s.at >= Duration::from_secs(3)).collect();
    println!("requests after the kill: {}", after_kill.len());
    let failed: Vec<_> = report.failed().iter().map(|s| (s.at, s.label, s.status)).take(20).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(after_kill.len() > 100, "too little load after the kill to mean anything");
}
