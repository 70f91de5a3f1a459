//! Managing API keys takes a person's session: a key can read its owner's keys but can neither
//! mint more (a leaked key must not make itself permanent) nor delete others.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::TestMesh;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_cannot_create_or_delete_api_keys() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.user("keyowner@example.com").await;
    let mut keys = Vec::new();
    for name in ["ci", "backup"] {
        let created =
            t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        keys.push((
            created.body["id"].as_str().unwrap().to_owned(),
            format!("key:{}", created.body["key"].as_str().unwrap()),
        ));
    }
    let (ci, backup) = (&keys[0], &keys[1]);

    let minted = t.call(Method::POST, "/v1/auth/api-keys", Some(&ci.1), Some(json!({"name": "more"}))).await;
    minted.assert_problem(403);
    let detail = minted.body["detail"].as_str().unwrap();
    assert!(detail.contains("API key") && detail.contains("session"), "{detail}");
    let deleted = t.call(Method::DELETE, &format!("/v1/auth/api-keys/{}", backup.0), Some(&ci.1), None).await;
    deleted.assert_problem(403);
    // Nor its own.
    t.call(Method::DELETE, &format!("/v1/auth/api-keys/{}", ci.0), Some(&ci.1), None)
        .await
        .assert_problem(403);

    // Nothing changed: the key may still list, both keys still work, and there are still two.
    let listed = t.call(Method::GET, "/v1/auth/api-keys", Some(&ci.1), None).await;
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    assert_eq!(listed.body["keys"].as_array().unwrap().len(), 2, "{:?}", listed.body);
    assert_eq!(t.call(Method::GET, "/v1/users/me", Some(&backup.1), None).await.status, StatusCode::OK);

    // The session does both.
    let deleted =
        t.call(Method::DELETE, &format!("/v1/auth/api-keys/{}", backup.0), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let created = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "new"}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    println!(
        "API key management: with an API key, create 403, delete 403 (other and own), list 200; with the session token, delete 204, create 201"
    );
    t.mesh.stop().await.unwrap();
}
