//! What a revocation leaves in the store for the gateways, and the lifetimes of auth's records.

mod support;

use std::time::Duration;

use auth_service::sessions::{REVOCATION_LEEWAY, revoked_key};
use mesh_core::store::{Store, StoreConfig};
use mesh_proto::auth::{LogoutRequest, RefreshRequest};
use mesh_tests::unique_prefix;
use sha2::{Digest, Sha256};
use support::{config_with, email, login, register, replica, verify_access_token};

/// A named in-process store the test reads alongside the replica.
async fn shared_store() -> (StoreConfig, Store) {
    let cfg = StoreConfig {
        redis_url: Some(format!("memory://{}", unique_prefix("auth-revocation"))),
        ..StoreConfig::default()
    };
    let store = Store::connect(&cfg).await.unwrap();
    (cfg, store)
}

/// `ttl` lies in `(want - 5s, want]`: set to `want` a moment ago.
fn about(ttl: Option<Duration>, want: Duration) -> bool {
    ttl.is_some_and(|ttl| ttl <= want && want - ttl < Duration::from_secs(5))
}

fn refresh_key(token: &str) -> String {
    format!("auth:refresh:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

#[tokio::test]
async fn logout_marks_the_session_revoked_for_as_long_as_its_access_tokens_live() {
    let (store_cfg, store) = shared_store().await;
    let cfg = config_with(store_cfg);
    let (access_ttl, refresh_ttl) = (cfg.access_ttl, cfg.refresh_ttl);
    let (_svc, client) = replica(cfg).await;
    let address = email("ada");
    let user_id = register(&client, &address).await;
    let pair = login(&client, &address).await;
    let sid = verify_access_token(&client, &pair.access_token).await.unwrap().sid;

    // Every record of a session expires: the session and its refresh token after refresh_ttl.
    let session_key = format!("auth:session:{sid}");
    assert!(about(store.ttl(&session_key).await.unwrap(), refresh_ttl));
    assert!(about(store.ttl(&refresh_key(&pair.refresh_token)).await.unwrap(), refresh_ttl));
    assert_eq!(store.get(&revoked_key(&sid)).await.unwrap(), None);

    client.clone().logout(LogoutRequest { user_id, session_id: sid.clone() }).await.unwrap();
    assert_eq!(store.get(&revoked_key(&sid)).await.unwrap().as_deref(), Some("logout"));
    let marker_ttl = store.ttl(&revoked_key(&sid)).await.unwrap();
    println!("revoked-session marker TTL {marker_ttl:?} (access token lifetime {access_ttl:?})");
    assert!(about(marker_ttl, access_ttl + REVOCATION_LEEWAY), "{marker_ttl:?}");
    assert_eq!(store.get(&session_key).await.unwrap(), None, "the session is gone too");
}

#[tokio::test]
async fn a_reused_refresh_token_marks_its_session_revoked() {
    let (store_cfg, store) = shared_store().await;
    let cfg = config_with(store_cfg);
    let (access_ttl, refresh_ttl) = (cfg.access_ttl, cfg.refresh_ttl);
    let (_svc, client) = replica(cfg).await;
    let address = email("mallory");
    register(&client, &address).await;
    let stolen = login(&client, &address).await;
    let other = login(&client, &address).await;
    let sid = verify_access_token(&client, &stolen.access_token).await.unwrap().sid;
    let other_sid = verify_access_token(&client, &other.access_token).await.unwrap().sid;

    let rotated = client
        .clone()
        .refresh(RefreshRequest { refresh_token: stolen.refresh_token.clone() })
        .await
        .unwrap()
        .into_inner();
    // The rotated marker and the new token expire too.
    assert!(about(store.ttl(&refresh_key(&stolen.refresh_token)).await.unwrap(), refresh_ttl));
    assert!(about(store.ttl(&refresh_key(&rotated.refresh_token)).await.unwrap(), refresh_ttl));
    assert_eq!(store.get(&revoked_key(&sid)).await.unwrap(), None);

    let reused = client.clone().refresh(RefreshRequest { refresh_token: stolen.refresh_token }).await;
    assert_eq!(reused.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(store.get(&revoked_key(&sid)).await.unwrap().as_deref(), Some("refresh_reuse"));
    assert!(about(store.ttl(&revoked_key(&sid)).await.unwrap(), access_ttl + REVOCATION_LEEWAY));
    assert_eq!(store.get(&revoked_key(&other_sid)).await.unwrap(), None, "only that session");
}
