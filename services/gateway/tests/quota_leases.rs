//! Leased quota across gateways: two gateways lease slices of one principal's window from two
//! quota replicas on one real Redis, over real gRPC, under many concurrent requests. However the
//! slices fall, no more than the limit is ever admitted, and once the slices are given back the
//! window admits exactly its limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gateway::Domain;
use gateway::clients::Clients;
use gateway::quota::{LeaseConfig, Leases};
use mesh_core::client::ClientConfig;
use mesh_core::store::StoreConfig;
use mesh_proto::quota::GetQuotaRequest;
use mesh_proto::quota::quota_service_client::QuotaServiceClient;
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};

const LIMIT: u64 = 500;
const TASKS: usize = 64;
const PRINCIPAL: &str = "shared-principal";

fn admitted(leased: gateway::quota::Leased) -> bool {
    match leased {
        gateway::quota::Leased::Status(status) => status.allowed,
        gateway::quota::Leased::Failed(failure) => panic!("the quota service failed: {:?}", failure.status),
    }
}

#[tokio::test]
async fn quota_leases_never_admit_more_than_the_limit_across_gateways() {
    let redis = RedisServer::start().await.unwrap();
    let store = StoreConfig {
        redis_url: Some(redis.url()),
        key_prefix: unique_prefix("leases"),
        ..StoreConfig::default()
    };
    let plans = BTreeMap::from([(
        "free".into(),
        quota_service::Plan { limit: LIMIT, window: Duration::from_secs(3600) },
    )]);
    let quota_cfg = quota_service::Config { store, plans, ..quota_service::Config::default() };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let cfg = quota_cfg.clone();
        replicas.push(
            Component::start(|listener, shutdown| quota_service::serve(cfg, listener, shutdown))
                .await
                .unwrap(),
        );
    }
    let services = gateway::config::Services {
        quota: ClientConfig::to(replicas.iter().map(|r| format!("http://{}", r.addr))),
        ..Default::default()
    };
    let gateways: Vec<Arc<Leases>> = (0..2)
        .map(|_| {
            let clients = Clients::dial(Domain::Identity, &services).unwrap();
            Arc::new(Leases::new(clients.quota, LeaseConfig::default()))
        })
        .collect();

    // Three times the limit at once, each task alternating gateways.
    let started = Instant::now();
    let per_gateway = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let gateways = gateways.clone();
        let per_gateway = per_gateway.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..(3 * LIMIT as usize / TASKS) {
                let g = (task + n) % 2;
                if admitted(gateways[g].take(PRINCIPAL).await) {
                    per_gateway[g].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent = [per_gateway[0].load(Ordering::Relaxed), per_gateway[1].load(Ordering::Relaxed)];
    let during = concurrent[0] + concurrent[1];
    println!(
        "{} requests from {TASKS} tasks over 2 gateways and 2 quota replicas in {:.2?}: admitted {during} \
         ({} + {}), limit {LIMIT}",
        TASKS * (3 * LIMIT as usize / TASKS),
        started.elapsed(),
        concurrent[0],
        concurrent[1]
    );
    assert!(during <= LIMIT, "admitted {during}, more than the limit {LIMIT}");
    assert!(concurrent[0] > 0 && concurrent[1] > 0, "both gateways admitted: {concurrent:?}");

    // What the slices still hold goes back; then the window admits exactly what is left of it.
    for gateway in &gateways {
        gateway.release_idle(true).await;
    }
    let (mut after, mut refused_in_a_row, mut n) = (0u64, 0, 0);
    while refused_in_a_row < 2 {
        if admitted(gateways[n % 2].take(PRINCIPAL).await) {
            after += 1;
            refused_in_a_row = 0;
        } else {
            refused_in_a_row += 1;
        }
        n += 1;
        assert!(n < 4 * LIMIT as usize, "never refused");
    }
    let mut client = QuotaServiceClient::new(grpc_channel(replicas[0].addr).await.unwrap());
    let status =
        client.get_quota(GetQuotaRequest { principal: PRINCIPAL.into() }).await.unwrap().into_inner();
    for gateway in &gateways {
        gateway.release_idle(true).await;
    }
    let settled =
        client.get_quota(GetQuotaRequest { principal: PRINCIPAL.into() }).await.unwrap().into_inner();
    println!(
        "then {after} more admitted one at a time; the service counts {} used, {} after the last release",
        status.used, settled.used
    );
    assert_eq!(status.used, LIMIT, "the window is spent exactly");
    assert_eq!(settled.used, LIMIT, "a spent window holds no slice to give back");
    assert_eq!(during + after, LIMIT, "both gateways refuse only once the limit is admitted, exactly");
}
