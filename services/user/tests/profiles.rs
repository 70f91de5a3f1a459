//! Creating, reading and updating profiles over real gRPC.

mod support;

use std::time::Duration;

use mesh_core::ids::unix_now;
use mesh_core::store::StoreConfig;
use mesh_proto::user::{CreateProfileRequest, GetProfileRequest, UpdateProfileRequest};
use mesh_tests::{RedisServer, grpc_channel, wait_until};
use support::{new_user, redis_store, replica};
use tonic::Code;

fn get(user_id: &str) -> GetProfileRequest {
    GetProfileRequest { user_id: user_id.into() }
}

fn update(user_id: &str, display_name: Option<&str>, bio: Option<&str>) -> UpdateProfileRequest {
    UpdateProfileRequest {
        user_id: user_id.into(),
        display_name: display_name.map(Into::into),
        bio: bio.map(Into::into),
    }
}

#[tokio::test]
async fn a_profile_round_trips_through_create_get_and_update() {
    let redis = RedisServer::start().await.unwrap();
    let (_svc, mut client) = replica(redis_store(&redis)).await;
    let user_id = mesh_core::ids::new_id();
    let before = unix_now();

    let created = client
        .create_profile(CreateProfileRequest {
            user_id: user_id.clone(),
            email: "  Ada.Lovelace@Example.ORG ".into(),
            display_name: " Ada ".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.user_id, user_id);
    assert_eq!(created.email, "ada.lovelace@example.org", "stored trimmed and lowercased");
    assert_eq!((created.display_name.as_str(), created.bio.as_str()), ("Ada", ""));
    assert!(created.created_at >= before && created.created_at <= unix_now());
    assert_eq!(created.updated_at, created.created_at);
    assert_eq!(client.get_profile(get(&user_id)).await.unwrap().into_inner(), created);

    // Let the clock pass the creation second so a changed updated_at is observable.
    assert!(wait_until(Duration::from_secs(3), || async { unix_now() > created.created_at }).await);
    let renamed = client.update_profile(update(&user_id, Some("Countess"), None)).await.unwrap().into_inner();
    assert_eq!((renamed.display_name.as_str(), renamed.bio.as_str()), ("Countess", ""));
    assert!(renamed.updated_at > created.updated_at, "{renamed:?}");
    assert_eq!((renamed.email.as_str(), renamed.created_at), (created.email.as_str(), created.created_at));

    let with_bio = client
        .update_profile(update(&user_id, None, Some("Wrote the first program.\nLiked engines.")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_bio.display_name, "Countess", "a field not set is unchanged");
    assert_eq!(with_bio.bio, "Wrote the first program.\nLiked engines.");
    assert!(with_bio.updated_at >= renamed.updated_at);

    let both = client.update_profile(update(&user_id, Some("Ada L."), Some(""))).await.unwrap().into_inner();
    assert_eq!((both.display_name.as_str(), both.bio.as_str()), ("Ada L.", ""), "an empty bio clears it");
    assert_eq!(client.get_profile(get(&user_id)).await.unwrap().into_inner(), both);
}

#[tokio::test]
async fn creating_twice_is_a_no_op_returning_the_existing_profile() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let first = new_user("First");
    let created = client.create_profile(first.clone()).await.unwrap().into_inner();
    client.update_profile(update(&first.user_id, None, Some("kept"))).await.unwrap();
    let current = client.get_profile(get(&first.user_id)).await.unwrap().into_inner();

    let repeated = client.create_profile(first.clone()).await.unwrap().into_inner();
    assert_eq!(repeated, current, "a repeat returns the profile as it stands");
    let different = CreateProfileRequest { display_name: "Second".into(), ..first.clone() };
    let again = client.create_profile(different).await.unwrap().into_inner();
    assert_eq!(again, current, "a repeat with other fields still changes nothing");
    assert_eq!((again.display_name.as_str(), again.bio.as_str()), ("First", "kept"));
    assert_eq!(again.created_at, created.created_at);
}

#[tokio::test]
async fn an_unknown_user_is_not_found() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let unknown = mesh_core::ids::new_id();
    let err = client.get_profile(get(&unknown)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = client.update_profile(update(&unknown, Some("Ghost"), None)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    // The refused update left nothing behind for a later create to pick up.
    let created = client
        .create_profile(CreateProfileRequest {
            user_id: unknown.clone(),
            email: "late@example.org".into(),
            display_name: "Late".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.display_name, "Late");
}

#[tokio::test]
async fn bad_inputs_are_invalid_argument_naming_the_field_and_change_nothing() {
    let (_svc, mut client) = replica(StoreConfig::default()).await;
    let user = new_user("Ada");
    let original = client.create_profile(user.clone()).await.unwrap().into_inner();
    let id = user.user_id.as_str();

    let bad_creates = [
        ("user_id", CreateProfileRequest { user_id: "user-1".into(), ..new_user("Ada") }),
        ("user_id", CreateProfileRequest { user_id: String::new(), ..new_user("Ada") }),
        ("email", CreateProfileRequest { email: String::new(), ..new_user("Ada") }),
        ("email", CreateProfileRequest { email: "no-at-sign".into(), ..new_user("Ada") }),
        ("email", CreateProfileRequest { email: format!("{}@x.io", "a".repeat(250)), ..new_user("Ada") }),
        ("display_name", new_user("")),
        ("display_name", new_user(&"x".repeat(65))),
        ("display_name", new_user("bell\u{7}")),
    ];
    for (field, req) in bad_creates {
        let err = client.create_profile(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
        if mesh_core::ids::is_id(&req.user_id) {
            let err = client.get_profile(get(&req.user_id)).await.unwrap_err();
            assert_eq!(err.code(), Code::NotFound, "a refused create created nothing");
        }
    }

    let long_bio = "b".repeat(501);
    let bad_updates = [
        ("user_id", update("user-1", Some("Ada"), None)),
        ("display_name", update(id, Some(""), None)),
        ("display_name", update(id, Some("   "), None)),
        ("display_name", update(id, Some(&"x".repeat(65)), None)),
        ("display_name", update(id, Some("new\nline"), None)),
        ("bio", update(id, None, Some(&long_bio))),
        ("bio", update(id, None, Some("esc\u{1b}[31m"))),
        // A valid field beside a bad one is not applied either.
        ("bio", update(id, Some("Valid"), Some(&long_bio))),
        ("display_name", update(id, Some("\u{0}"), Some("valid bio"))),
        ("nothing to update", update(id, None, None)),
    ];
    for (field, req) in bad_updates {
        let err = client.update_profile(req.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {err:?}");
        assert!(err.message().starts_with(field), "{field}: {}", err.message());
    }
    let after = client.get_profile(get(id)).await.unwrap().into_inner();
    assert_eq!(after, original, "nothing changed");

    let err = client.get_profile(get("../../etc/passwd")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("user_id"), "{}", err.message());
}

#[tokio::test]
async fn serves_grpc_health_for_the_user_service() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let (svc, _client) = replica(StoreConfig::default()).await;
    let mut health = HealthClient::new(grpc_channel(svc.addr).await.unwrap());
    let service = "mesh.user.v1.UserService".to_owned();
    let status = health.check(HealthCheckRequest { service }).await.unwrap().into_inner();
    assert_eq!(status.status, 1, "SERVING");
    svc.stop().await.unwrap();
}
