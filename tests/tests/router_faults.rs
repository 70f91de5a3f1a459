//! The router's fault layer (`meshctl chaos delay|fail router-N`): off unless `admin_faults`
//! is set, and then an injected abort or delay reaches the client while the probes pass.

use std::time::{Duration, Instant};

use mesh_tests::process::{ServiceProcess, binary};

async fn put_fault(client: &reqwest::Client, admin: std::net::SocketAddr, spec: serde_json::Value) -> u16 {
    client.put(format!("http://{admin}/fault")).json(&spec).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_router_injects_faults_only_when_admin_faults_is_on() {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // No gateway listens behind either pool: unfaulted requests are the router's own 503.
    let env = [
        ("MESH_POOLS__IDENTITY__INSTANCES", "127.0.0.1:1"),
        ("MESH_POOLS__BUSINESS__INSTANCES", "127.0.0.1:1"),
    ];

    let off = ServiceProcess::start(binary("gateway-router"), &env).unwrap();
    assert_eq!(put_fault(&client, off.admin, serde_json::json!({"abort_rate": 1.0})).await, 404);
    drop(off);

    let on_env = [env[0], env[1], ("MESH_ADMIN_FAULTS", "true")];
    let router = ServiceProcess::start(binary("gateway-router"), &on_env).unwrap();
    let url = format!("http://{}/v1/articles", router.addr);
    let unfaulted = client.get(&url).send().await.unwrap().status().as_u16();
    assert_eq!(unfaulted, 503, "no gateway is up");

    // An abort with a status the router never answers by itself: it can only be the fault's.
    assert_eq!(
        put_fault(&client, router.admin, serde_json::json!({"abort_rate": 1.0, "abort_status": 418})).await,
        200
    );
    let answer = client.get(&url).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 418);
    assert_eq!(answer.headers()["x-mesh-fault"], "abort");
    let probe = client.get(format!("http://{}/healthz", router.admin)).send().await.unwrap();
    assert_eq!(probe.status().as_u16(), 200, "probes are never faulted");

    // A delay holds every request at least that long (a lower bound: the mechanism sleeps).
    let delay = Duration::from_millis(400);
    assert_eq!(put_fault(&client, router.admin, serde_json::json!({"delay": "400ms"})).await, 200);
    let started = Instant::now();
    let delayed = client.get(&url).send().await.unwrap().status().as_u16();
    let took = started.elapsed();
    assert_eq!(delayed, 503);
    assert!(took >= delay, "a 400ms delay answered in {took:?}");
    println!("delayed request answered in {took:?} (delay {delay:?})");

    let cleared = client.delete(format!("http://{}/fault", router.admin)).send().await.unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    assert_eq!(client.get(&url).send().await.unwrap().status().as_u16(), 503);
}
