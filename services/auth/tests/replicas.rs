//! Two replicas on one real Redis behave as one service.

mod support;

use std::time::Duration;

use mesh_proto::auth::{
    CreateApiKeyRequest, DeleteApiKeyRequest, GetJwksRequest, RefreshRequest, VerifyApiKeyRequest,
};
use mesh_tests::{Component, RedisServer};
use support::{
    Client, config_with, email, login, redis_store, register, register_request, replica, verify_access_token,
};
use tonic::Code;

async fn two_replicas(redis: &RedisServer) -> [(Component, Client); 2] {
    let store = redis_store(redis);
    [replica(config_with(store.clone())).await, replica(config_with(store)).await]
}

#[tokio::test]
async fn a_user_registered_on_one_replica_logs_in_on_the_other() {
    let redis = RedisServer::start().await.unwrap();
    let [(_a, a), (_b, b)] = two_replicas(&redis).await;
    let address = email("ada");
    let user_id = register(&a, &address).await;
    let pair = login(&b, &address).await;
    // A token from B verifies against A's JWKS, and B refuses the email A took.
    assert_eq!(verify_access_token(&a, &pair.access_token).await.unwrap().sub, user_id);
    let err = b.clone().register(register_request(&address.to_uppercase())).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
}

#[tokio::test]
async fn replicas_without_configured_keys_publish_the_same_jwks() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    // Started together, so their first-writer race on the development key is a real one.
    let (a, b) = tokio::join!(replica(config_with(store.clone())), replica(config_with(store.clone())));
    let ((_a, a), (_b, b)) = (a, b);
    let jwks_a = a.clone().get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    let jwks_b = b.clone().get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    assert_eq!(jwks_a, jwks_b);
    assert_eq!(jwks_a.keys.len(), 1);
    let key = &jwks_a.keys[0];
    assert_eq!(
        (key.kty.as_str(), key.crv.as_str(), key.alg.as_str(), key.r#use.as_str()),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!((jwks_a.issuer.as_str(), jwks_a.audience.as_str()), ("mesh-auth", "mesh"));

    // A replica started later on the same store joins the same key.
    let (_c, c) = replica(config_with(store)).await;
    assert_eq!(c.clone().get_jwks(GetJwksRequest {}).await.unwrap().into_inner(), jwks_a);
}

#[tokio::test]
async fn an_api_key_created_on_one_replica_verifies_and_is_deleted_on_the_other() {
    let redis = RedisServer::start().await.unwrap();
    let [(_a, a), (_b, b)] = two_replicas(&redis).await;
    let user_id = register(&a, &email("keys")).await;
    let created = a
        .clone()
        .create_api_key(CreateApiKeyRequest { user_id: user_id.clone(), name: "shared".into() })
        .await
        .unwrap()
        .into_inner();
    let principal = b
        .clone()
        .verify_api_key(VerifyApiKeyRequest { key: created.key.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (principal.user_id.as_str(), principal.api_key_id.as_str()),
        (user_id.as_str(), created.id.as_str())
    );

    b.clone().delete_api_key(DeleteApiKeyRequest { user_id, id: created.id }).await.unwrap();
    let err = a.clone().verify_api_key(VerifyApiKeyRequest { key: created.key }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_rotated_on_one_replica_is_reuse_on_the_other() {
    let redis = RedisServer::start().await.unwrap();
    let [(_a, a), (_b, b)] = two_replicas(&redis).await;
    let address = email("eve");
    register(&a, &address).await;
    let first = login(&a, &address).await;
    let second = a
        .clone()
        .refresh(RefreshRequest { refresh_token: first.refresh_token.clone() })
        .await
        .unwrap()
        .into_inner();

    let err = b.clone().refresh(RefreshRequest { refresh_token: first.refresh_token }).await.unwrap_err();
    assert_eq!(err.message(), "refresh token reuse detected; session revoked");
    let err = a.clone().refresh(RefreshRequest { refresh_token: second.refresh_token }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

/// Exactly one concurrent caller wins the swap from active to rotated; every other one is reuse.
/// The reuse revokes the session, so the winner either got a pair whose refresh token is already
/// dead or (when a reuse revoked the session first) found the session gone.
#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_swap_and_revoke_the_session() {
    const CALLS: usize = 20;
    let redis = RedisServer::start().await.unwrap();
    let [(_a, a), (_b, b)] = two_replicas(&redis).await;
    let address = email("racer");
    register(&a, &address).await;
    let token = login(&a, &address).await.refresh_token;

    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = token.clone();
        tasks
            .push(tokio::spawn(async move { client.refresh(RefreshRequest { refresh_token: token }).await }));
    }
    let (mut winners, mut reused, mut granted) = (0, 0, Vec::new());
    for task in tasks {
        match task.await.unwrap() {
            Ok(pair) => {
                winners += 1;
                granted.push(pair.into_inner().refresh_token);
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
                match status.message() {
                    "refresh token reuse detected; session revoked" => reused += 1,
                    "refresh token is no longer valid: session revoked" => winners += 1,
                    other => panic!("unexpected refusal: {other}"),
                }
            }
        }
    }
    assert_eq!((winners, reused), (1, CALLS - 1));
    for token in granted {
        let err = a.clone().refresh(RefreshRequest { refresh_token: token }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_create_one_account() {
    const CALLS: usize = 10;
    let redis = RedisServer::start().await.unwrap();
    let [(_a, a), (_b, b)] = two_replicas(&redis).await;
    let address = email("twin");
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let mut client = if i % 2 == 0 { a.clone() } else { b.clone() };
        let req = register_request(&address);
        tasks.push(tokio::spawn(async move { client.register(req).await }));
    }
    let mut created = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(response) => created.push(response.into_inner().user_id),
            Err(status) => assert_eq!(status.code(), Code::AlreadyExists, "{status:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    let claims = verify_access_token(&b, &login(&b, &address).await.access_token).await.unwrap();
    assert_eq!(claims.sub, created[0]);
}

#[tokio::test]
async fn a_redis_outage_is_unavailable_not_a_crash() {
    let mut redis = RedisServer::start().await.unwrap();
    let mut store = redis_store(&redis);
    store.command_timeout = Duration::from_millis(300);
    let (_svc, client) = replica(config_with(store)).await;
    let address = email("outage");
    register(&client, &address).await;
    redis.kill();
    let err = client.clone().register(register_request(&email("later"))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(!err.message().contains("127.0.0.1"), "leaks an address: {}", err.message());
    // JWKS needs no store: verifiers can still fetch it.
    client.clone().get_jwks(GetJwksRequest {}).await.unwrap();
}
