//! Searching the catalogue by words, page by page, over real gRPC on a Redis shared by two replicas.

mod support;

use std::collections::HashSet;

use articles_service::Config;
use mesh_proto::articles::ListArticlesRequest;
use mesh_tests::RedisServer;
use support::{Client, create, redis_store, replica};

/// Every page of `query` from the start, at most `max_pages` calls, alternating between clients.
/// Returns the ids in the order returned and the number of calls it took.
async fn walk(clients: &mut [Client], query: &str, limit: u32, max_pages: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    for call in 0..max_pages {
        let req = ListArticlesRequest { query: query.into(), limit, cursor };
        let page = clients[call % clients.len()].list_articles(req).await.unwrap().into_inner();
        assert!(page.articles.len() <= limit as usize, "page larger than asked");
        ids.extend(page.articles.into_iter().map(|a| a.id));
        cursor = page.next_cursor;
        if cursor.is_empty() {
            return (ids, call + 1);
        }
    }
    panic!("{query:?} still had a cursor after {max_pages} pages");
}

#[tokio::test]
async fn search_keeps_articles_matching_every_word_across_pages() {
    const ARTICLES: usize = 30;
    let redis = RedisServer::start().await.unwrap();
    let store = redis_store(&redis);
    let (_a, client_a) = replica(Config { store: store.clone(), ..Config::default() }).await;
    let (_b, client_b) = replica(Config { store, ..Config::default() }).await;
    let mut clients = [client_a, client_b];

    // Titles cycle through three kinds; every fifth body mentions the garden.
    let kinds = ["Red Widget", "Blue widget", "red GADGET"];
    let mut by_index = Vec::new();
    for i in 0..ARTICLES {
        let body = if i % 5 == 0 { "Made for the Garden shed" } else { "For indoor use" };
        by_index.push(create(&mut clients[0], &format!("{} no. {i}", kinds[i % 3]), body, 100, 1).await.id);
    }
    let expect = |keep: &dyn Fn(usize) -> bool| {
        let mut ids: Vec<String> = (0..ARTICLES).filter(|i| keep(*i)).map(|i| by_index[i].clone()).collect();
        ids.sort(); // listing is oldest first, i.e. by id
        ids
    };

    let cases: [(&str, Vec<String>); 5] = [
        ("red widget", expect(&|i| i % 3 == 0)),
        ("  WIDGET   red ", expect(&|i| i % 3 == 0)),
        ("red garden", expect(&|i| i % 3 != 1 && i % 5 == 0)),
        ("widget", expect(&|i| i % 3 != 2)),
        ("purple", Vec::new()),
    ];
    for (query, expected) in cases {
        let (found, pages) = walk(&mut clients, query, 3, 20).await;
        println!("{query:?}: {} of {ARTICLES} articles match, in {pages} pages of at most 3", found.len());
        assert_eq!(found.iter().collect::<HashSet<_>>().len(), found.len(), "{query:?}: duplicates");
        assert_eq!(found, expected, "{query:?}: every match once, oldest first");
        // An exact last page ends the walk: the look-ahead saw there is nothing more.
        assert_eq!(pages, expected.len().div_ceil(3).max(1), "{query:?}");
    }
}

#[tokio::test]
async fn a_sparse_search_stops_at_the_scan_bound_and_continues_from_its_cursor() {
    const ARTICLES: usize = 23;
    const MAX_SCAN: usize = 5;
    let redis = RedisServer::start().await.unwrap();
    let cfg = Config { store: redis_store(&redis), max_scan: MAX_SCAN, ..Config::default() };
    let (_svc, client) = replica(cfg).await;
    let mut clients = [client];
    let mut needles = Vec::new();
    for i in 0..ARTICLES {
        let title = if i == 2 || i == 19 { format!("Needle {i}") } else { format!("Hay {i}") };
        let article = create(&mut clients[0], &title, "", 100, 1).await;
        if title.starts_with("Needle") {
            needles.push(article.id);
        }
    }
    needles.sort();

    let (found, calls) = walk(&mut clients, "needle", 10, 20).await;
    println!("sparse query over {ARTICLES} articles, at most {MAX_SCAN} examined per call: {calls} calls");
    assert_eq!(found, needles);
    assert_eq!(calls, ARTICLES.div_ceil(MAX_SCAN), "each call examined at most {MAX_SCAN} articles");
    // Without a query the bound still holds, and every article is there.
    let (all, _) = walk(&mut clients, "", 4, 20).await;
    assert_eq!(all.len(), ARTICLES);
}
