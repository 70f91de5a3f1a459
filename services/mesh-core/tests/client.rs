//! Health-gated balancing over real gRPC servers on port-0 listeners.

use std::time::{Duration, Instant};

use mesh_core::client::{ClientConfig, ServiceChannel, balanced_channel};
use mesh_core::grpc::ServerConfig;
use mesh_tests::{Component, wait_until};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// A server that serves only `grpc.health.v1` (enough to be balanced over).
async fn server() -> Component {
    Component::start(|listener, shutdown| async move {
        let routes = tonic::service::Routes::default();
        mesh_core::grpc::serve(listener, routes, &[], &ServerConfig::default(), shutdown).await?;
        Ok(())
    })
    .await
    .unwrap()
}

fn config(endpoints: Vec<String>) -> ClientConfig {
    ClientConfig {
        endpoints,
        connect_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_secs(2),
        health_keepalive: Duration::from_millis(300),
        dns_refresh: Duration::from_millis(200),
        ..ClientConfig::default()
    }
}

async fn call(channel: &ServiceChannel) -> Result<(), tonic::Status> {
    HealthClient::new(channel.clone()).check(HealthCheckRequest { service: String::new() }).await.map(|_| ())
}

async fn healthy(channel: &ServiceChannel, n: usize) -> bool {
    let channel = channel.clone();
    wait_until(Duration::from_secs(5), || {
        let channel = channel.clone();
        async move { channel.healthy_replicas() == n }
    })
    .await
}

#[tokio::test]
async fn a_stopped_replica_leaves_the_balancer_and_calls_keep_succeeding() {
    let a = server().await;
    let b = server().await;
    let channel = balanced_channel(&config(vec![a.uri(), b.uri()])).unwrap();
    assert!(healthy(&channel, 2).await);
    a.stop().await.unwrap();
    assert!(healthy(&channel, 1).await, "the stopped replica is still in the balancer");
    let mut failed = 0;
    for _ in 0..200 {
        failed += usize::from(call(&channel).await.is_err());
    }
    assert_eq!(failed, 0, "200 calls after one of two replicas stopped");
    drop(b);
}

#[tokio::test]
async fn with_no_healthy_replica_a_call_fails_fast_as_unavailable() {
    let a = server().await;
    let channel = balanced_channel(&config(vec![a.uri()])).unwrap();
    call(&channel).await.unwrap();
    a.stop().await.unwrap();
    assert!(healthy(&channel, 0).await);
    let started = Instant::now();
    let err = call(&channel).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(500), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_replica_that_comes_up_later_joins_the_balancer() {
    // Reserve a port, free it, and point the client at it before anything listens there.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let channel = balanced_channel(&config(vec![format!("http://{addr}")])).unwrap();
    assert_eq!(call(&channel).await.unwrap_err().code(), tonic::Code::Unavailable);
    let late = Component::start(|_, shutdown| async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let routes = tonic::service::Routes::default();
        mesh_core::grpc::serve(listener, routes, &[], &ServerConfig::default(), shutdown).await?;
        Ok(())
    })
    .await
    .unwrap();
    assert!(healthy(&channel, 1).await, "the late replica never joined");
    call(&channel).await.unwrap();
    drop(late);
}

#[tokio::test]
async fn host_names_are_resolved_to_replicas() {
    let a = server().await;
    let channel = balanced_channel(&config(vec![format!("http://localhost:{}", a.addr.port())])).unwrap();
    assert!(healthy(&channel, 1).await);
    call(&channel).await.unwrap();
}

#[test]
fn endpoints_without_a_port_or_host_are_refused() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        assert!(balanced_channel(&config(vec![])).is_err());
        assert!(balanced_channel(&config(vec!["http://no-port".into()])).is_err());
        assert!(balanced_channel(&config(vec!["not a uri".into()])).is_err());
    });
}
