//! Recording events and reading windowed summaries over real gRPC.

mod support;

use std::collections::HashMap;

use mesh_core::ids::{is_id, new_id, unix_now};
use mesh_core::store::StoreConfig;
use mesh_proto::analytics::{GetSummaryRequest, RecordEventRequest};
use mesh_tests::RedisServer;
use support::{counts, event, redis_store, replica, summary};
use tonic::Code;

#[tokio::test]
async fn a_just_recorded_event_is_in_every_window_from_5m_to_7d() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, mut client) = replica(redis_store(&redis)).await;
    let owner = new_id();
    let before = unix_now();

    let recorded = client.record_event(event(&owner, "page.view")).await.unwrap().into_inner();
    assert!(is_id(&recorded.id), "{recorded:?}");
    assert!(recorded.recorded_at >= before && recorded.recorded_at <= unix_now());
    let again = client.record_event(event(&owner, "page.view")).await.unwrap().into_inner();
    assert_ne!(again.id, recorded.id, "each event has its own id");

    for (window, seconds) in
        [("5m", 300), ("15m", 900), ("1h", 3600), ("6h", 21_600), ("24h", 86_400), ("7d", 604_800)]
    {
        let s = summary(&mut client, &owner, window).await;
        assert_eq!((s.owner_id.as_str(), s.window.as_str()), (owner.as_str(), window));
        assert_eq!((s.total, counts(&s)), (2, vec![("page.view", 2)]), "{window}");
        assert!(s.from <= recorded.recorded_at && recorded.recorded_at <= s.to, "{window}: {s:?}");
        assert!(s.to - s.from >= seconds, "{window} covers at least the window: {s:?}");
    }
    let default = summary(&mut client, &owner, "").await;
    assert_eq!((default.window.as_str(), default.total), ("1h", 2), "no window means the last hour");
}

#[tokio::test]
async fn a_summary_counts_by_type_highest_first() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let owner = new_id();
    for (kind, times) in [("click", 2), ("view", 5), ("buy", 2), ("signup", 1)] {
        for _ in 0..times {
            client.record_event(event(&owner, kind)).await.unwrap();
        }
    }
    let s = summary(&mut client, &owner, "15m").await;
    assert_eq!(counts(&s), [("view", 5), ("buy", 2), ("click", 2), ("signup", 1)]);
    assert_eq!(s.total, 10);
}

#[tokio::test]
async fn a_summary_shows_only_its_owners_events() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let (alice, bob, carol) = (new_id(), new_id(), new_id());
    client.record_event(event(&alice, "page.view")).await.unwrap();
    client.record_event(event(&bob, "checkout")).await.unwrap();
    client.record_event(event(&bob, "checkout")).await.unwrap();

    for window in ["5m", "24h"] {
        let a = summary(&mut client, &alice, window).await;
        assert_eq!((a.total, counts(&a)), (1, vec![("page.view", 1)]));
        let b = summary(&mut client, &bob, window).await;
        assert_eq!((b.total, counts(&b)), (2, vec![("checkout", 2)]));
        let c = summary(&mut client, &carol, window).await;
        assert_eq!((c.total, c.by_type.len()), (0, 0), "an owner without events has an empty summary");
    }
}

#[tokio::test]
async fn a_bad_window_is_invalid_argument_listing_the_accepted_values() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let owner = new_id();
    for window in ["1m", "2h", "1H", "30d", "1h ", "all"] {
        let req = GetSummaryRequest { owner_id: owner.clone(), window: window.into() };
        let err = client.get_summary(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{window:?}");
        assert!(err.message().starts_with("window"), "{}", err.message());
        for accepted in ["5m", "15m", "1h", "6h", "24h", "7d"] {
            assert!(err.message().contains(accepted), "{window:?}: {}", err.message());
        }
    }
    let req = GetSummaryRequest { owner_id: "../other".into(), window: "1h".into() };
    let err = client.get_summary(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("owner_id"), "{}", err.message());
}

#[tokio::test]
async fn bad_event_inputs_are_invalid_argument_naming_the_field_and_count_nothing() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let owner = new_id();
    let with = |properties: HashMap<String, String>| RecordEventRequest { properties, ..event(&owner, "ok") };
    let many: HashMap<String, String> = (0..33).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let bad = [
        ("owner_id", event("", "ok")),
        ("owner_id", event("owner-1", "ok")),
        ("type", event(&owner, "")),
        ("type", event(&owner, "Page.View")),
        ("type", event(&owner, "page view")),
        ("type", event(&owner, &"t".repeat(65))),
        ("properties", with(many)),
        ("properties", with(HashMap::from([(String::new(), "v".to_owned())]))),
        ("properties", with(HashMap::from([("k".repeat(65), "v".to_owned())]))),
        ("properties.path", with(HashMap::from([("path".to_owned(), "v".repeat(513))]))),
    ];
    for (field, req) in bad {
        let err = client.record_event(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    let s = summary(&mut client, &owner, "5m").await;
    assert_eq!(s.total, 0, "refused events were not counted: {s:?}");

    // The limits themselves are accepted (with room for them in the properties' JSON).
    let cfg = analytics_service::Config { max_properties_bytes: 32 * 1024, ..Default::default() };
    let (_roomy, mut roomy) = support::replica_with(cfg).await;
    let full: HashMap<String, String> = (0..32).map(|i| (format!("{i:0>64}"), "v".repeat(512))).collect();
    roomy.record_event(RecordEventRequest { r#type: "t".repeat(64), ..with(full) }).await.unwrap();
    assert_eq!(summary(&mut roomy, &owner, "5m").await.total, 1);
}

#[tokio::test]
async fn an_event_with_too_large_properties_is_out_of_range_naming_the_limit_and_counts_nothing() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let owner = new_id();
    let with = |properties: HashMap<String, String>| RecordEventRequest { properties, ..event(&owner, "ok") };
    // Every property is within its own limits; together they are 16 KiB of JSON.
    let big: HashMap<String, String> = (0..32).map(|i| (format!("k{i}"), "v".repeat(512))).collect();
    let err = client.record_event(with(big)).await.unwrap_err();
    println!("refused: {:?} {}", err.code(), err.message());
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(err.message().starts_with("properties:") && err.message().contains("4096"), "{}", err.message());
    assert_eq!(summary(&mut client, &owner, "5m").await.total, 0, "a refused event is not counted");

    // Exactly the default bound is accepted, one byte more is not: eight properties of 450
    // characters and a padding one, sized so the JSON is that long.
    let sized = |total: usize| {
        let mut props: HashMap<String, String> = (0..8).map(|i| (format!("k{i}"), "v".repeat(450))).collect();
        let without = serde_json::to_string(&props).unwrap().len() + ",\"pad\":\"\"".len();
        props.insert("pad".into(), "p".repeat(total - without));
        assert_eq!(serde_json::to_string(&props).unwrap().len(), total);
        props
    };
    client.record_event(with(sized(4096))).await.unwrap();
    assert_eq!(client.record_event(with(sized(4097))).await.unwrap_err().code(), Code::OutOfRange);
    assert_eq!(summary(&mut client, &owner, "5m").await.total, 1);
}
