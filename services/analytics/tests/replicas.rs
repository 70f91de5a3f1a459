//! Two replicas of the analytics service sharing one Redis count as one.

mod support;

use std::collections::BTreeMap;

use mesh_core::ids::new_id;
use mesh_tests::RedisServer;
use support::{counts, event, redis_store, replica, summary};

#[tokio::test]
async fn events_recorded_on_one_replica_show_in_a_summary_from_another() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, mut client_a) = replica(store.clone()).await;
    let (_b, mut client_b) = replica(store).await;
    let owner = new_id();

    client_a.record_event(event(&owner, "signup")).await.unwrap();
    for window in ["5m", "7d"] {
        let s = summary(&mut client_b, &owner, window).await;
        assert_eq!((s.total, counts(&s)), (1, vec![("signup", 1)]), "{window}");
    }
    client_b.record_event(event(&owner, "login")).await.unwrap();
    let s = summary(&mut client_a, &owner, "1h").await;
    assert_eq!(counts(&s), [("login", 1), ("signup", 1)]);
}

#[tokio::test]
async fn concurrent_records_over_two_replicas_are_counted_exactly() {
    const PLAN: [(&str, u64); 3] = [("page.view", 110), ("click", 60), ("purchase", 30)];
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, client_a) = replica(store.clone()).await;
    let (_b, client_b) = replica(store).await;
    let owner = new_id();
    let bystander = new_id();

    let mut tasks = Vec::new();
    for (kind, times) in PLAN {
        for i in 0..times {
            let mut client = if i % 2 == 0 { client_a.clone() } else { client_b.clone() };
            let req = event(&owner, kind);
            tasks.push(tokio::spawn(async move { client.record_event(req).await }));
        }
    }
    let mut ids = BTreeMap::new();
    for task in tasks {
        let recorded = task.await.unwrap().unwrap().into_inner();
        assert!(ids.insert(recorded.id, ()).is_none(), "ids are unique");
    }
    assert_eq!(ids.len(), 200);

    let mut client_a = client_a;
    for window in ["5m", "1h", "24h", "7d"] {
        let s = summary(&mut client_a, &owner, window).await;
        assert_eq!(counts(&s), PLAN.to_vec(), "{window}");
        assert_eq!(s.total, 200, "{window}");
    }
    let mut client_b = client_b;
    assert_eq!(summary(&mut client_b, &bystander, "7d").await.total, 0);
}
