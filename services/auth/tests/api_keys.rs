//! API keys over real gRPC: the secret is shown once, verifies until deleted, and belongs to
//! one user.

mod support;

use mesh_proto::auth::{
    CreateApiKeyRequest, CreateApiKeyResponse, DeleteApiKeyRequest, ListApiKeysRequest, VerifyApiKeyRequest,
};
use support::{Client, config, email, register, replica};
use tonic::Code;

async fn create(client: &Client, user_id: &str, name: &str) -> CreateApiKeyResponse {
    client
        .clone()
        .create_api_key(CreateApiKeyRequest { user_id: user_id.into(), name: name.into() })
        .await
        .unwrap()
        .into_inner()
}

async fn verify(client: &Client, key: &str) -> Result<mesh_proto::auth::Principal, tonic::Status> {
    client.clone().verify_api_key(VerifyApiKeyRequest { key: key.into() }).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_key_is_listed_without_its_secret_verifies_and_dies_with_its_deletion() {
    let (_svc, client) = replica(config()).await;
    let address = email("ada");
    let user_id = register(&client, &address).await;

    let created = create(&client, &user_id, "ci deploy").await;
    assert!(created.key.starts_with("mk_"), "{}", created.key);
    assert_eq!(created.name, "ci deploy");
    assert!(created.created_at > 0);

    let listed = client
        .clone()
        .list_api_keys(ListApiKeysRequest { user_id: user_id.clone(), limit: 0, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.keys.len(), 1);
    assert_eq!(listed.next_cursor, "");
    let listed_key = &listed.keys[0];
    assert_eq!((listed_key.id.as_str(), listed_key.name.as_str()), (created.id.as_str(), "ci deploy"));
    assert!(created.key.starts_with(&listed_key.prefix) && listed_key.prefix.len() < 16);
    let shown = format!("{listed:?}");
    assert!(
        !shown.contains(&created.key) && !shown.contains(&created.key[3..]),
        "the secret leaked: {shown}"
    );

    let principal = verify(&client, &created.key).await.unwrap();
    assert_eq!(principal.user_id, user_id);
    assert_eq!(principal.email, address);
    assert_eq!(principal.roles, ["user"]);
    assert_eq!(principal.api_key_id, created.id);

    client
        .clone()
        .delete_api_key(DeleteApiKeyRequest { user_id: user_id.clone(), id: created.id.clone() })
        .await
        .unwrap();
    let err = verify(&client, &created.key).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let listed = client
        .clone()
        .list_api_keys(ListApiKeysRequest { user_id, limit: 0, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.keys.is_empty());
}

#[tokio::test]
async fn another_user_can_neither_delete_nor_list_a_key() {
    let (_svc, client) = replica(config()).await;
    let owner = register(&client, &email("owner")).await;
    let other = register(&client, &email("other")).await;
    let created = create(&client, &owner, "mine").await;

    let err = client
        .clone()
        .delete_api_key(DeleteApiKeyRequest { user_id: other.clone(), id: created.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let theirs = client
        .clone()
        .list_api_keys(ListApiKeysRequest { user_id: other, limit: 0, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(theirs.keys.is_empty());
    assert_eq!(verify(&client, &created.key).await.unwrap().user_id, owner);
}

#[tokio::test]
async fn listing_pages_through_every_key_once() {
    let (_svc, client) = replica(config()).await;
    let user_id = register(&client, &email("pager")).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(create(&client, &user_id, &format!("key {i}")).await.id);
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let page = client
            .clone()
            .list_api_keys(ListApiKeysRequest { user_id: user_id.clone(), limit: 3, cursor: cursor.clone() })
            .await
            .unwrap()
            .into_inner();
        assert!(page.keys.len() <= 3);
        seen.extend(page.keys.into_iter().map(|k| k.id));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    // Ids order by creation time to the millisecond; within one they order at random.
    created.sort();
    assert_eq!(seen, created, "in id order, each once");
}

#[tokio::test]
async fn a_user_cannot_hold_more_keys_than_the_cap() {
    let mut cfg = config();
    cfg.max_api_keys_per_user = 3;
    let (_svc, client) = replica(cfg).await;
    let user_id = register(&client, &email("hoarder")).await;
    for i in 0..3 {
        create(&client, &user_id, &format!("k{i}")).await;
    }
    let err = client
        .clone()
        .create_api_key(CreateApiKeyRequest { user_id: user_id.clone(), name: "one more".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn bad_api_key_requests_are_refused_without_touching_anything() {
    let (_svc, client) = replica(config()).await;
    let user_id = register(&client, &email("careful")).await;
    let unknown_user = mesh_core::ids::new_id();

    let creates = [
        (String::new(), "n".to_string(), Code::InvalidArgument, "user_id"),
        ("nope".to_string(), "n".to_string(), Code::InvalidArgument, "user_id"),
        (user_id.clone(), String::new(), Code::InvalidArgument, "name"),
        (user_id.clone(), "x".repeat(65), Code::InvalidArgument, "name"),
        (user_id.clone(), "bell\u{7}".to_string(), Code::InvalidArgument, "name"),
        (unknown_user.clone(), "n".to_string(), Code::NotFound, "user"),
    ];
    for (user_id, name, code, field) in creates {
        let err = client.clone().create_api_key(CreateApiKeyRequest { user_id, name }).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().starts_with(field), "{}", err.message());
    }
    let err = client
        .clone()
        .list_api_keys(ListApiKeysRequest { user_id: user_id.clone(), limit: 5, cursor: "../x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("cursor:"));
    let err = client
        .clone()
        .delete_api_key(DeleteApiKeyRequest { user_id: user_id.clone(), id: mesh_core::ids::new_id() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .clone()
        .delete_api_key(DeleteApiKeyRequest { user_id: user_id.clone(), id: "*".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = verify(&client, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    for key in ["mk_short", "sk_live_123", &format!("mk_{}", "0".repeat(64))] {
        let err = verify(&client, key).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::Unauthenticated, "invalid API key"), "{key}");
    }
    let listed = client
        .clone()
        .list_api_keys(ListApiKeysRequest { user_id, limit: 0, cursor: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.keys.is_empty());
}
