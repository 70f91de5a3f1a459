//! The quota service over real gRPC, on a real Redis shared by two replicas.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::store::StoreConfig;
use mesh_proto::quota::quota_service_client::QuotaServiceClient;
use mesh_proto::quota::{ConsumeRequest, GetQuotaRequest, SetPlanRequest};
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use quota_service::{Config, Plan};
use tonic::Code;
use tonic::transport::Channel;

fn config(store: StoreConfig, limit: u64) -> Config {
    let window = Duration::from_secs(3600);
    Config {
        store,
        plans: BTreeMap::from([
            ("free".into(), Plan { limit, window }),
            ("pro".into(), Plan { limit: limit * 10, window }),
        ]),
        ..Config::default()
    }
}

async fn replica(cfg: Config) -> (Component, QuotaServiceClient<Channel>) {
    let component =
        Component::start(|listener, shutdown| quota_service::serve(cfg, listener, shutdown)).await.unwrap();
    let client = QuotaServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

fn redis_store(redis: &RedisServer) -> StoreConfig {
    StoreConfig { redis_url: Some(redis.url()), key_prefix: unique_prefix("quota"), ..StoreConfig::default() }
}

fn consume(principal: &str) -> ConsumeRequest {
    ConsumeRequest { principal: principal.into(), cost: 1 }
}

#[tokio::test]
async fn consuming_reports_the_window_and_refuses_once_spent() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, mut client) = replica(config(redis_store(&redis), 3)).await;

    for used in 1..=3u64 {
        let status = client.consume(consume("user-1")).await.unwrap().into_inner();
        assert!(status.allowed);
        assert_eq!((status.used, status.remaining, status.limit), (used, 3 - used, 3));
        assert_eq!(status.plan, "free");
        assert_eq!(status.window_seconds, 3600);
        assert_eq!(status.reset_at % 3600, 0, "windows are aligned");
        assert!(status.reset_at > mesh_core::ids::unix_now());
    }
    let spent = client.consume(consume("user-1")).await.unwrap().into_inner();
    assert!(!spent.allowed);
    assert_eq!((spent.used, spent.remaining), (3, 0));

    // Another principal has its own window; reading does not consume.
    let other = client.get_quota(GetQuotaRequest { principal: "user-2".into() }).await.unwrap().into_inner();
    assert_eq!((other.used, other.remaining), (0, 3));
    let again = client.get_quota(GetQuotaRequest { principal: "user-1".into() }).await.unwrap().into_inner();
    assert_eq!(again.used, 3);
}

#[tokio::test]
async fn a_plan_change_raises_the_limit_of_the_current_window() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, mut client) = replica(config(redis_store(&redis), 1)).await;
    assert!(client.consume(consume("u")).await.unwrap().into_inner().allowed);
    assert!(!client.consume(consume("u")).await.unwrap().into_inner().allowed);
    let pro = client
        .set_plan(SetPlanRequest { principal: "u".into(), plan: "pro".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((pro.plan.as_str(), pro.limit, pro.used), ("pro", 10, 1));
    assert!(client.consume(consume("u")).await.unwrap().into_inner().allowed);
}

#[tokio::test]
async fn bad_inputs_are_invalid_argument_and_change_nothing() {
    let (_svc, mut client) = replica(config(StoreConfig::default(), 5)).await;
    let bad = [
        ConsumeRequest { principal: String::new(), cost: 1 },
        ConsumeRequest { principal: "has space".into(), cost: 1 },
        ConsumeRequest { principal: "x".repeat(129), cost: 1 },
        ConsumeRequest { principal: "ok".into(), cost: 10_001 },
    ];
    for req in bad {
        let err = client.consume(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err:?}");
        assert!(!err.message().is_empty());
    }
    let err = client
        .set_plan(SetPlanRequest { principal: "ok".into(), plan: "platinum".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("platinum"), "{}", err.message());
    let status = client.get_quota(GetQuotaRequest { principal: "ok".into() }).await.unwrap().into_inner();
    assert_eq!((status.plan.as_str(), status.used), ("free", 0));
}

#[tokio::test]
async fn concurrent_consumers_on_two_replicas_never_exceed_the_limit() {
    const LIMIT: u64 = 100;
    const CALLS: usize = 400;
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, client_a) = replica(config(store.clone(), LIMIT)).await;
    let (_b, client_b) = replica(config(store, LIMIT)).await;
    let clients = Arc::new([client_a, client_b]);

    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let mut client = clients[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            client.consume(consume("shared")).await.unwrap().into_inner().allowed
        }));
    }
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    println!("{CALLS} concurrent consumes over two replicas, limit {LIMIT}: {allowed} allowed");
    assert_eq!(allowed as u64, LIMIT);
    let mut client = clients[0].clone();
    let status = client.get_quota(GetQuotaRequest { principal: "shared".into() }).await.unwrap().into_inner();
    assert_eq!((status.used, status.remaining), (LIMIT, 0));
}

#[tokio::test]
async fn a_redis_outage_is_unavailable_not_a_crash() {
    let mut redis = RedisServer::start().await.unwrap();
    let mut store = redis_store(&redis);
    store.command_timeout = Duration::from_millis(300);
    let (_svc, mut client) = replica(config(store, 5)).await;
    assert!(client.consume(consume("u")).await.unwrap().into_inner().allowed);
    redis.kill();
    let err = client.consume(consume("u")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(!err.message().contains("127.0.0.1"), "leaks an address: {}", err.message());
}

#[tokio::test]
async fn serves_grpc_health_and_reports_not_serving_on_drain() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let mut cfg = config(StoreConfig::default(), 5);
    cfg.server.drain_grace = Duration::from_millis(300);
    cfg.server.drain_timeout = Duration::from_millis(300);
    let (svc, _client) = replica(cfg).await;
    let mut health = HealthClient::new(grpc_channel(svc.addr).await.unwrap());
    let name = "mesh.quota.v1.QuotaService";
    let status = health.check(HealthCheckRequest { service: name.into() }).await.unwrap().into_inner();
    assert_eq!(status.status, 1, "SERVING");

    let mut watch = health.watch(HealthCheckRequest { service: name.into() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 1);
    let stopping = tokio::spawn(svc.stop());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.status, 2, "NOT_SERVING during the drain grace");
    stopping.await.unwrap().unwrap();
}

#[tokio::test]
async fn leases_grant_what_fits_and_releases_give_back_only_to_their_window() {
    use mesh_proto::quota::{LeaseRequest, ReleaseRequest};
    let redis = RedisServer::start().await.unwrap();
    let (_svc, mut client) = replica(config(redis_store(&redis), 10)).await;
    let lease = |want| LeaseRequest { principal: "user-l".into(), want };

    let grant = client.lease(lease(4)).await.unwrap().into_inner();
    let status = grant.status.unwrap();
    assert_eq!((grant.granted, status.used, status.remaining), (4, 4, 6));
    let grant = client.lease(lease(8)).await.unwrap().into_inner();
    assert_eq!((grant.granted, grant.status.unwrap().remaining), (6, 0), "only what was left");
    let spent = client.lease(lease(1)).await.unwrap().into_inner();
    assert_eq!(spent.granted, 0);
    assert!(!spent.status.unwrap().allowed);

    let reset_at = status.reset_at;
    let back = ReleaseRequest { principal: "user-l".into(), reset_at, count: 3 };
    assert_eq!(client.release(back).await.unwrap().into_inner().remaining, 3);
    let ended = ReleaseRequest { principal: "user-l".into(), reset_at: reset_at - 3600, count: 3 };
    assert_eq!(
        client.release(ended).await.unwrap().into_inner().remaining,
        3,
        "an ended window is not credited"
    );

    for bad in [lease(0), lease(10_001)] {
        assert_eq!(client.lease(bad).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let zero = ReleaseRequest { principal: "user-l".into(), reset_at, count: 0 };
    assert_eq!(client.release(zero).await.unwrap_err().code(), Code::InvalidArgument);
}
