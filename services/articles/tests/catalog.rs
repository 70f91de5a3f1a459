//! Creating, reading and listing articles over real gRPC, on a Redis shared by two replicas.

mod support;

use std::collections::HashSet;

use mesh_core::store::StoreConfig;
use mesh_proto::articles::{Actor, CreateArticleRequest, GetArticleRequest, ListArticlesRequest};
use mesh_tests::RedisServer;
use support::{config, create, new_article, redis_store, replica};
use tonic::Code;

fn list(limit: u32, cursor: &str) -> ListArticlesRequest {
    ListArticlesRequest { query: String::new(), limit, cursor: cursor.into() }
}

#[tokio::test]
async fn creating_an_article_requires_the_admin_role() {
    let (_svc, mut client) = replica(config(StoreConfig::default())).await;
    let user = Some(Actor { user_id: mesh_core::ids::new_id(), roles: vec!["user".into()] });
    for actor in [None, user] {
        let req = CreateArticleRequest { actor, ..new_article("Lamp", "", 100, 1) };
        let err = client.create_article(req).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    }
    // Even an invalid article is refused for the role first, not for its fields.
    let req = CreateArticleRequest { actor: None, ..new_article("", "", -1, -1) };
    assert_eq!(client.create_article(req).await.unwrap_err().code(), Code::PermissionDenied);
    let page = client.list_articles(list(0, "")).await.unwrap().into_inner();
    assert!(page.articles.is_empty(), "nothing was stored: {:?}", page.articles);
}

#[tokio::test]
async fn bad_article_fields_are_invalid_argument_naming_the_field_and_store_nothing() {
    let (_svc, mut client) = replica(config(StoreConfig::default())).await;
    let cases = [
        ("title", new_article("", "b", 1, 1)),
        ("title", new_article(&"t".repeat(201), "b", 1, 1)),
        ("title", new_article("tab\tin title", "b", 1, 1)),
        ("body", new_article("t", &"b".repeat(10_001), 1, 1)),
        ("price_cents", new_article("t", "b", -1, 1)),
        ("price_cents", new_article("t", "b", 1_000_000_001, 1)),
        ("stock", new_article("t", "b", 1, -1)),
        ("stock", new_article("t", "b", 1, 1_000_001)),
    ];
    for (field, req) in cases {
        let err = client.create_article(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().starts_with(&format!("{field}:")), "names {field}: {}", err.message());
    }
    let page = client.list_articles(list(0, "")).await.unwrap().into_inner();
    assert!(page.articles.is_empty(), "nothing was stored: {:?}", page.articles);
    // The bounds themselves are accepted.
    let edge = create(&mut client, &"t".repeat(200), &"b".repeat(10_000), 1_000_000_000, 1_000_000).await;
    assert_eq!((edge.price_cents, edge.stock), (1_000_000_000, 1_000_000));
}

#[tokio::test]
async fn a_created_article_reads_back_with_its_stock_from_any_replica() {
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, mut client_a) = replica(config(store.clone())).await;
    let (_b, mut client_b) = replica(config(store)).await;

    let created = create(&mut client_a, "Desk lamp", "Brass, 40 cm", 4_500, 12).await;
    assert!(mesh_core::ids::is_id(&created.id), "{}", created.id);
    assert!((created.created_at - mesh_core::ids::unix_now()).abs() <= 2);
    let read = client_b.get_article(GetArticleRequest { id: created.id.clone() }).await.unwrap().into_inner();
    assert_eq!(read, created);

    let unknown = client_b.get_article(GetArticleRequest { id: mesh_core::ids::new_id() }).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let malformed = client_b.get_article(GetArticleRequest { id: "../stock".into() }).await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().starts_with("id:"), "{}", malformed.message());
}

#[tokio::test]
async fn listing_pages_oldest_first_without_gaps_or_duplicates() {
    const ARTICLES: usize = 23;
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, mut client_a) = replica(config(store.clone())).await;
    let (_b, client_b) = replica(config(store)).await;
    let mut created = Vec::new();
    for i in 0..ARTICLES {
        created.push(create(&mut client_a, &format!("Article {i}"), "", 100, 1).await.id);
    }
    let mut expected = created.clone();
    expected.sort(); // ids are time-ordered; within one millisecond only byte order is defined

    // The default page is 20; pages alternate between replicas, so the cursor is all the state.
    let mut clients = [client_a, client_b];
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = Vec::new();
    for round in 0..10 {
        let page = clients[round % 2].list_articles(list(0, &cursor)).await.unwrap().into_inner();
        pages.push(page.articles.len());
        seen.extend(page.articles.into_iter().map(|a| a.id));
        cursor = page.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    println!("{ARTICLES} articles listed with the default limit: pages of {pages:?}");
    assert_eq!(pages, [20, 3]);
    assert_eq!(seen, expected, "oldest first, every article once");

    let mut small = Vec::new();
    let mut cursor = String::new();
    for _ in 0..ARTICLES {
        let page = clients[0].list_articles(list(5, &cursor)).await.unwrap().into_inner();
        assert!(page.articles.len() <= 5);
        small.extend(page.articles.into_iter().map(|a| a.id));
        cursor = page.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(small, expected);
    assert_eq!(small.iter().collect::<HashSet<_>>().len(), ARTICLES);
}

#[tokio::test]
async fn bad_limits_and_cursors_are_invalid_argument() {
    let (_svc, mut client) = replica(config(StoreConfig::default())).await;
    let err = client.list_articles(list(101, "")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("limit:"), "{}", err.message());
    for cursor in ["not-a-cursor", "articles:index", &"U".repeat(26)] {
        let err = client.list_articles(list(5, cursor)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{cursor}");
        assert!(err.message().starts_with("cursor:"), "{}", err.message());
    }
    let err = client
        .list_articles(ListArticlesRequest { query: "q".repeat(201), limit: 0, cursor: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("query:"), "{}", err.message());
}
