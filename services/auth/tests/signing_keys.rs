//! Configured signing keys: rotation keeps old tokens verifiable; keys load from PEM or file.

mod support;

use std::time::Duration;

use auth_service::SigningKeyConfig;
use auth_service::keys::generate;
use mesh_proto::auth::GetJwksRequest;
use support::{config, email, login, register, replica, verify_access_token};

fn inline(kid: &str, pem: &str) -> SigningKeyConfig {
    SigningKeyConfig { kid: kid.into(), private_key_pem: Some(pem.into()), private_key_file: None }
}

#[tokio::test]
async fn after_a_rotation_the_new_key_signs_and_the_old_one_still_verifies() {
    let (_, old_pem) = generate("").unwrap();
    let (_, new_pem) = generate("").unwrap();
    let mut before = config();
    before.signing_keys = vec![inline("2024-01", &old_pem)];
    let mut after = config();
    after.signing_keys = vec![inline("2025-01", &new_pem), inline("2024-01", &old_pem)];
    let (_old, old) = replica(before).await;
    let (_new, new) = replica(after).await;

    let address = email("rotation");
    register(&old, &address).await;
    let old_token = login(&old, &address).await.access_token;
    assert_eq!(jsonwebtoken::decode_header(&old_token).unwrap().kid.as_deref(), Some("2024-01"));

    let jwks = new.clone().get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    let kids: Vec<&str> = jwks.keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(kids, ["2025-01", "2024-01"]);
    // A verifier that fetched the new JWKS still accepts the token the old key signed.
    verify_access_token(&new, &old_token).await.unwrap();

    register(&new, &address).await;
    let new_token = login(&new, &address).await.access_token;
    assert_eq!(jsonwebtoken::decode_header(&new_token).unwrap().kid.as_deref(), Some("2025-01"));
    verify_access_token(&new, &new_token).await.unwrap();
    // The old JWKS does not know the new key: that is why rotation publishes before it signs.
    assert!(verify_access_token(&old, &new_token).await.is_err());
}

#[tokio::test]
async fn a_signing_key_loads_from_a_file() {
    let (_, pem) = generate("").unwrap();
    let dir = std::env::temp_dir().join(format!("auth-keys-{}", mesh_core::ids::new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("signing.pem");
    std::fs::write(&file, &pem).unwrap();
    let mut cfg = config();
    cfg.signing_keys = vec![SigningKeyConfig {
        kid: "from-file".into(),
        private_key_pem: None,
        private_key_file: Some(file),
    }];
    let (_svc, client) = replica(cfg).await;
    let address = email("file");
    register(&client, &address).await;
    let claims = verify_access_token(&client, &login(&client, &address).await.access_token).await;
    std::fs::remove_dir_all(dir).unwrap();
    claims.unwrap();
}

#[tokio::test]
async fn a_bad_signing_key_stops_the_service_at_start() {
    let mut cfg = config();
    cfg.signing_keys = vec![inline("broken", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        auth_service::serve(cfg, listener, Box::pin(std::future::pending())),
    )
    .await
    .expect("serve returns at once on a bad key");
    let err = result.unwrap_err().to_string();
    assert!(err.contains("broken") && !err.contains("AAAA"), "{err}");
}

#[tokio::test]
async fn serves_grpc_health_and_reports_not_serving_on_drain() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let mut cfg = config();
    cfg.server.drain_grace = Duration::from_millis(300);
    cfg.server.drain_timeout = Duration::from_millis(300);
    let (svc, _client) = replica(cfg).await;
    let mut health = HealthClient::new(mesh_tests::grpc_channel(svc.addr).await.unwrap());
    let name = "mesh.auth.v1.AuthService";
    let status = health.check(HealthCheckRequest { service: name.into() }).await.unwrap().into_inner();
    assert_eq!(status.status, 1, "SERVING");

    let mut watch = health.watch(HealthCheckRequest { service: name.into() }).await.unwrap().into_inner();
    assert_eq!(watch.message().await.unwrap().unwrap().status, 1);
    let stopping = tokio::spawn(svc.stop());
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.status, 2, "NOT_SERVING during the drain grace");
    stopping.await.unwrap().unwrap();
}
