//! Two replicas of the user service sharing one Redis behave as one service.

mod support;

use mesh_proto::user::{GetProfileRequest, UpdateProfileRequest};
use mesh_tests::RedisServer;
use support::{new_user, redis_store, replica};

#[tokio::test]
async fn concurrent_updates_of_different_fields_both_survive() {
    const ROUNDS: usize = 20;
    const USERS: usize = 5;
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, mut client_a) = replica(store.clone()).await;
    let (_b, client_b) = replica(store).await;

    let mut users = Vec::new();
    for i in 0..USERS {
        let req = new_user(&format!("user {i}"));
        users.push(client_a.create_profile(req).await.unwrap().into_inner().user_id);
    }

    for round in 0..ROUNDS {
        // Every user gets a name change through A and a bio change through B, all at once.
        let mut tasks = Vec::new();
        for user_id in &users {
            let mut a = client_a.clone();
            let name = UpdateProfileRequest {
                user_id: user_id.clone(),
                display_name: Some(format!("name {round}")),
                bio: None,
            };
            tasks.push(tokio::spawn(async move { a.update_profile(name).await }));
            let mut b = client_b.clone();
            let bio = UpdateProfileRequest {
                user_id: user_id.clone(),
                display_name: None,
                bio: Some(format!("bio {round}")),
            };
            tasks.push(tokio::spawn(async move { b.update_profile(bio).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        for user_id in &users {
            let profile = client_a
                .get_profile(GetProfileRequest { user_id: user_id.clone() })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                (profile.display_name.as_str(), profile.bio.as_str()),
                (format!("name {round}").as_str(), format!("bio {round}").as_str()),
                "round {round}, user {user_id}: an update was lost"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_creates_on_two_replicas_agree_on_one_profile() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, mut client_a) = replica(store.clone()).await;
    let (_b, mut client_b) = replica(store).await;

    for _ in 0..20 {
        let first = new_user("from A");
        let second =
            mesh_proto::user::CreateProfileRequest { display_name: "from B".into(), ..first.clone() };
        let (a, b) = tokio::join!(client_a.create_profile(first.clone()), client_b.create_profile(second));
        let (a, b) = (a.unwrap().into_inner(), b.unwrap().into_inner());
        assert_eq!(a, b, "both replicas answer the one profile that won");
        let read =
            client_b.get_profile(GetProfileRequest { user_id: first.user_id }).await.unwrap().into_inner();
        assert_eq!(read, a);
    }
}
