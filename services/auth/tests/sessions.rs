//! Refresh rotation, reuse detection and logout over real gRPC.

mod support;

use mesh_proto::auth::{LogoutRequest, RefreshRequest};
use support::{Client, config, email, login, register, replica, verify_access_token};
use tonic::{Code, Status};

async fn refresh(client: &Client, token: &str) -> Result<mesh_proto::auth::TokenPair, Status> {
    client.clone().refresh(RefreshRequest { refresh_token: token.into() }).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_refresh_rotates_the_pair_within_the_session() {
    let (_svc, client) = replica(config()).await;
    let address = email("ada");
    let user_id = register(&client, &address).await;
    let first = login(&client, &address).await;
    let session = verify_access_token(&client, &first.access_token).await.unwrap().sid;

    let second = refresh(&client, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_eq!((second.token_type.as_str(), second.expires_in), ("Bearer", 15 * 60));
    let claims = verify_access_token(&client, &second.access_token).await.unwrap();
    assert_eq!((claims.sub.as_str(), claims.sid.as_str()), (user_id.as_str(), session.as_str()));

    let third = refresh(&client, &second.refresh_token).await.unwrap();
    verify_access_token(&client, &third.access_token).await.unwrap();
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let (_svc, client) = replica(config()).await;
    let address = email("mallory");
    register(&client, &address).await;
    let stolen = login(&client, &address).await;
    let other_session = login(&client, &address).await;
    let rotated = refresh(&client, &stolen.refresh_token).await.unwrap();

    let err = refresh(&client, &stolen.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "refresh token reuse detected; session revoked");
    // The newest token of that session is dead too, and so is the old one, still as reuse.
    let err = refresh(&client, &rotated.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = refresh(&client, &stolen.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Only that session: the user's other session still refreshes.
    refresh(&client, &other_session.refresh_token).await.unwrap();
}

#[tokio::test]
async fn logout_revokes_the_sessions_refresh_token_and_only_that_session() {
    let (_svc, client) = replica(config()).await;
    let address = email("bob");
    let user_id = register(&client, &address).await;
    let pair = login(&client, &address).await;
    let kept = login(&client, &address).await;
    let session_id = verify_access_token(&client, &pair.access_token).await.unwrap().sid;

    client
        .clone()
        .logout(LogoutRequest { user_id: user_id.clone(), session_id: session_id.clone() })
        .await
        .unwrap();
    let err = refresh(&client, &pair.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    refresh(&client, &kept.refresh_token).await.unwrap();
    // Logging out twice: the session is gone.
    let err = client.clone().logout(LogoutRequest { user_id, session_id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn logging_out_another_users_session_is_not_found_and_revokes_nothing() {
    let (_svc, client) = replica(config()).await;
    let victim = email("victim");
    register(&client, &victim).await;
    let attacker_id = register(&client, &email("attacker")).await;
    let pair = login(&client, &victim).await;
    let session_id = verify_access_token(&client, &pair.access_token).await.unwrap().sid;

    let err = client.clone().logout(LogoutRequest { user_id: attacker_id, session_id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    refresh(&client, &pair.refresh_token).await.unwrap();
}

#[tokio::test]
async fn unknown_and_malformed_refresh_tokens_are_unauthenticated() {
    let (_svc, client) = replica(config()).await;
    let unknown = format!("mr_{}", "ab".repeat(32));
    for token in [unknown.as_str(), "mr_", "not-a-token", "mr_ZZZZ"] {
        let err = refresh(&client, token).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{token}");
        assert_eq!(err.message(), "invalid refresh token");
    }
    for token in [String::new(), "x".repeat(257)] {
        let err = refresh(&client, &token).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with("refresh_token:"), "{}", err.message());
    }
}

#[tokio::test]
async fn logout_with_malformed_ids_is_invalid_argument() {
    let (_svc, client) = replica(config()).await;
    let id = mesh_core::ids::new_id();
    let cases = [
        (String::new(), id.clone(), "user_id"),
        ("../../etc".to_string(), id.clone(), "user_id"),
        (id.clone(), String::new(), "session_id"),
        (id.clone(), "auth:session:*".to_string(), "session_id"),
    ];
    for (user_id, session_id, field) in cases {
        let err = client.clone().logout(LogoutRequest { user_id, session_id }).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(&format!("{field}:")), "{}", err.message());
    }
}
