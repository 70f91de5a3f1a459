//! `WatchEvents` over real gRPC: events recorded on one replica reach a watcher on another,
//! in order, filtered, resumable, and bounded in the store.

#[allow(dead_code)] // Not every helper is used here.
mod support;

use std::time::Duration;

use mesh_core::ids::new_id;
use mesh_core::store::Store;
use mesh_proto::analytics::{Event, WatchEventsRequest};
use mesh_tests::RedisServer;
use support::{event, redis_store, replica};
use tonic::Code;

fn watch(owner: &str, kind: &str, after_id: &str) -> WatchEventsRequest {
    WatchEventsRequest { owner_id: owner.into(), r#type: kind.into(), after_id: after_id.into() }
}

/// `<ms>-<seq>` as numbers, to compare positions.
fn position(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').expect("an entry id");
    (ms.parse().unwrap(), seq.parse().unwrap())
}

async fn next(stream: &mut tonic::Streaming<Event>) -> Event {
    tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event within 5s")
        .expect("no stream error")
        .expect("the stream goes on")
}

#[tokio::test]
async fn events_recorded_on_one_replica_reach_a_watcher_on_another_in_order_and_resumable() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_one, mut recorder) = replica(store.clone()).await;
    let (_two, mut watcher) = replica(store.clone()).await;
    let owner = new_id();
    recorder.record_event(event(&owner, "before.watch")).await.unwrap();

    let mut all = watcher.watch_events(watch(&owner, "", "")).await.unwrap().into_inner();
    let mut clicks = watcher.watch_events(watch(&owner, "click", "")).await.unwrap().into_inner();
    let mut others = watcher.watch_events(watch(&new_id(), "", "")).await.unwrap().into_inner();
    let first = recorder.record_event(event(&owner, "page.view")).await.unwrap().into_inner();
    recorder.record_event(event(&owner, "click")).await.unwrap();

    let seen = next(&mut all).await;
    assert_eq!((seen.r#type.as_str(), seen.event_id.as_str()), ("page.view", first.id.as_str()), "{seen:?}");
    assert_eq!(seen.properties.get("path").map(String::as_str), Some("/home"));
    assert_eq!(seen.recorded_at, first.recorded_at);
    let click = next(&mut all).await;
    assert_eq!(click.r#type, "click");
    assert!(position(&click.id) > position(&seen.id), "positions increase: {click:?} {seen:?}");
    assert_eq!(next(&mut clicks).await.id, click.id, "the filtered watch sees only the click");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), others.message()).await.is_err(),
        "another owner's watch sees nothing"
    );

    // Resuming after the first event replays the second, from either replica.
    let mut resumed = recorder.watch_events(watch(&owner, "", &seen.id)).await.unwrap().into_inner();
    assert_eq!(next(&mut resumed).await.id, click.id);

    for bad in [watch("", "", ""), watch(&owner, "NOT A TYPE", ""), watch(&owner, "", "1-x")] {
        let status = watcher.watch_events(bad.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}: {status:?}");
    }

    // The owner's log stays bounded: small events, so the count binds (1000), and it expires.
    let raw = Store::connect(&store).await.unwrap();
    for _ in 0..1200 {
        recorder.record_event(event(&owner, "bulk")).await.unwrap();
    }
    let key = format!("analytics:live:{owner}");
    let kept = raw.log_after(&key, None, 5000).await.unwrap().len();
    let ttl = raw.ttl(&key).await.unwrap();
    println!("live log entries kept after 1203 events: {kept}, expiring in {ttl:?}");
    assert_eq!(kept, 1000);
    assert!(ttl.is_some_and(|t| t > Duration::from_secs(3500)), "the default 1h, renewed: {ttl:?}");
}

#[tokio::test]
async fn large_events_are_bounded_by_the_logs_bytes() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_svc, mut client) = replica(store.clone()).await;
    let owner = new_id();
    // Just under the default 4096 bytes of properties JSON each.
    let properties: std::collections::HashMap<String, String> =
        (0..7).map(|i| (format!("k{i}"), "v".repeat(500))).collect();
    for _ in 0..200 {
        let req = mesh_proto::analytics::RecordEventRequest {
            properties: properties.clone(),
            ..event(&owner, "big")
        };
        client.record_event(req).await.unwrap();
    }
    let raw = Store::connect(&store).await.unwrap();
    let kept = raw.log_after(&format!("analytics:live:{owner}"), None, 5000).await.unwrap();
    let bytes: usize = kept.iter().flat_map(|e| &e.fields).map(|(f, v)| f.len() + v.len()).sum();
    println!("200 events of ~3.6 KiB: {} kept, {bytes} bytes (bound 262144)", kept.len());
    assert!(bytes <= 256 * 1024, "{bytes}");
    assert!(kept.len() > 60 && kept.len() < 200, "{}", kept.len());
}

#[tokio::test]
async fn a_draining_replica_ends_its_watches_at_once() {
    let redis = RedisServer::start().await.unwrap();
    let (component, mut client) = replica(redis_store(&redis)).await;
    let owner = new_id();
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(client.watch_events(watch(&owner, "", "")).await.unwrap().into_inner());
    }
    let started = std::time::Instant::now();
    component.stop().await.unwrap();
    let drained = started.elapsed();
    for mut watch in watches {
        let end = tokio::time::timeout(Duration::from_secs(2), watch.message()).await.expect("ends");
        assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    }
    println!("drained with 3 open watches in {drained:?}");
    assert!(drained < Duration::from_secs(2), "{drained:?}");
}
