//! Stored growth is bounded (§8): after a walkthrough that touches every feature, every key in
//! the mesh's Redis belongs to a known family, and each family either expires (TTL > 0, within
//! its documented lifetime) or is a durable family listed here with the reason it must not expire
//! and the cap it is held to (entries, bytes). A key of a family nobody listed fails the test by
//! name: a new key family has to say here how it is bounded.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use meshctl::Kind;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::sse::SseStream;
use support::{ADMIN_EMAIL, Setup, TestMesh};

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

/// How a family is bounded.
#[derive(Clone, Copy, Debug)]
enum Bound {
    /// Every key expires, at most this long from now.
    Ttl { max: Duration },
    /// A capped log: expires (at most `max_ttl` from now) and holds at most `max_len` entries
    /// and `max_bytes` of what callers stored, checked against Redis's own accounting (MEMORY
    /// USAGE), which adds its per-entry and per-node overhead: at most 1.5x here.
    Log { max_ttl: Duration, max_len: u64, max_bytes: u64 },
    /// Never expires, for the reason given; each key is held to `max_bytes` (MEMORY USAGE) and,
    /// for streams and indexes, `max_len` entries.
    Durable { reason: &'static str, max_len: Option<u64>, max_bytes: u64 },
}

/// One key family: its pattern (segments; `{…}` is any one segment, `{…*}` the rest of the
/// key) and its bound.
struct Family {
    pattern: &'static str,
    bound: Bound,
}

const fn ttl(pattern: &'static str, max_secs: u64) -> Family {
    Family { pattern, bound: Bound::Ttl { max: Duration::from_secs(max_secs) } }
}

const fn durable(
    pattern: &'static str,
    reason: &'static str,
    max_len: Option<u64>,
    max_bytes: u64,
) -> Family {
    Family { pattern, bound: Bound::Durable { reason, max_len, max_bytes } }
}

/// Every family the mesh stores, with its bound at the default configuration.
const FAMILIES: &[Family] = &[
    // auth
    durable("auth:user:{id}", "the account itself", None, 2048),
    durable("auth:email:{email}", "the account's login name, one per account", None, 1024),
    ttl("auth:session:{id}", 30 * DAY),
    ttl("auth:refresh:{digest}", 30 * DAY),
    ttl("auth:revoked:{sid}", HOUR),
    durable(
        "auth:apikey:{id}",
        "an API key lives until its owner deletes it; at most 100 per user",
        None,
        2048,
    ),
    durable("auth:apikey-hash:{digest}", "the lookup of a live API key, one per key", None, 1024),
    durable(
        "auth:apikeys:{user}",
        "the owner's API key index, capped by max_api_keys_per_user",
        Some(100),
        16 * 1024,
    ),
    durable("auth:apikey-count:{user}", "the counter that caps API keys per user", None, 512),
    durable("auth:dev-signing-key", "the one development signing key (no key configured)", None, 4096),
    // user
    durable("user:profile:{id}", "the profile", None, 2048),
    durable("user:profile:{id}:display_name", "a profile field, bounded by validation", None, 2048),
    durable("user:profile:{id}:bio", "a profile field, bounded by validation", None, 4096),
    // quota
    ttl("quota:count:{principal}:{width}:{index}", DAY + 60),
    durable("quota:plan:{principal}", "an assigned plan, one per principal, set by operators", None, 512),
    // gateways
    ttl("gw:lkg:{key*}", DAY),
    ttl("gw:queued-key:{owner}:{key*}", DAY),
    ttl("gw:queued:{owner}:{id}", DAY),
    // Login and registration throttles (forget_after / window 1h, lockouts up to 15 min).
    ttl("gw:throttle:{key*}", HOUR + 60),
    // orders
    ttl("orders:idem:{owner}:{key*}", DAY),
    ttl("orders:queued:{id}", DAY),
    durable(
        "orders:order:{id}",
        "the order, a business record; each one is metered and takes stock",
        None,
        16 * 1024,
    ),
    durable(
        "orders:by-owner:{owner}",
        "the owner's order index, one member per order (grows with the orders themselves)",
        None,
        64 * 1024,
    ),
    durable(
        "orders:queue",
        "the durable order queue: an accepted order is never dropped; the gateways refuse (503) past \
         order_queue.max_len entries or a backlog older than order_queue.max_age",
        Some(10_000),
        // ~3 KiB per entry at most.
        10_000 * 3 * 1024,
    ),
    Family {
        pattern: "orders:events:{id}",
        bound: Bound::Log { max_ttl: Duration::from_secs(7 * DAY), max_len: 100, max_bytes: 32 * 1024 },
    },
    // articles
    durable("articles:item:{id}", "the catalogue, written by admins only", None, 64 * 1024),
    durable("articles:stock:{id}", "an article's stock counter", None, 512),
    durable("articles:index", "the catalogue index, written by admins only", None, 1 << 20),
    ttl("articles:reservation:{id}", 7 * DAY),
    // analytics
    ttl("analytics:{owner}:m:{start}", 2 * HOUR),
    ttl("analytics:{owner}:h:{start}", 8 * DAY),
    Family {
        pattern: "analytics:live:{owner}",
        bound: Bound::Log { max_ttl: Duration::from_secs(HOUR), max_len: 1000, max_bytes: 256 * 1024 },
    },
];

/// Whether `key` (without the prefix) has the shape of `pattern`.
fn matches(pattern: &str, key: &str) -> bool {
    let (mut p, mut k) = (pattern.split(':'), key.split(':'));
    loop {
        match (p.next(), k.next()) {
            (None, None) => return true,
            (Some(seg), Some(_)) if seg.starts_with('{') && seg.ends_with("*}") => return true,
            (Some(seg), Some(_)) if seg.starts_with('{') && seg.ends_with('}') => {}
            (Some(seg), Some(part)) if seg == part => {}
            _ => return false,
        }
    }
}

fn family_of(key: &str) -> Option<&'static Family> {
    FAMILIES.iter().find(|f| matches(f.pattern, key))
}

/// What the test saw of one family.
#[derive(Default)]
struct Seen {
    keys: usize,
    max_ttl: Option<Duration>,
    max_len: u64,
    max_bytes: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_stored_key_family_is_bounded() {
    let mut prefix = String::new();
    let mut t = TestMesh::start_customised(Setup::default(), |opts, _| {
        prefix = opts.store.key_prefix.clone();
        // All of this test's traffic comes from one address.
        opts.configure_router =
            std::sync::Arc::new(|cfg: &mut gateway_router::Config| cfg.limits.per_client_rps = 0);
    })
    .await;
    walk_through_everything(&mut t).await;

    let client = redis::Client::open(t.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = {
        let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(format!("{prefix}*")).await.unwrap();
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key.unwrap());
        }
        keys
    };
    assert!(keys.len() > 20, "the walkthrough stored something: {keys:?}");

    let mut unknown = Vec::new();
    let mut violations = Vec::new();
    let mut seen: BTreeMap<&'static str, Seen> = BTreeMap::new();
    for full in &keys {
        let key = &full[prefix.len()..];
        let Some(family) = family_of(key) else {
            unknown.push(key.to_owned());
            continue;
        };
        let pttl: i64 = redis::cmd("PTTL").arg(full).query_async(&mut conn).await.unwrap();
        if pttl == -2 {
            continue; // Expired since the scan.
        }
        let kind: String = redis::cmd("TYPE").arg(full).query_async(&mut conn).await.unwrap();
        let len: u64 = match kind.as_str() {
            "stream" => redis::cmd("XLEN").arg(full).query_async(&mut conn).await.unwrap(),
            "zset" => redis::cmd("ZCARD").arg(full).query_async(&mut conn).await.unwrap(),
            "hash" => redis::cmd("HLEN").arg(full).query_async(&mut conn).await.unwrap(),
            _ => 1,
        };
        let bytes: u64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(full)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        let left = (pttl >= 0).then(|| Duration::from_millis(pttl as u64));
        let entry = seen.entry(family.pattern).or_default();
        entry.keys += 1;
        entry.max_ttl = entry.max_ttl.max(left);
        entry.max_len = entry.max_len.max(len);
        entry.max_bytes = entry.max_bytes.max(bytes);

        let mut violate = |why: String| violations.push(format!("{key} ({}): {why}", family.pattern));
        match family.bound {
            Bound::Ttl { max } => match left {
                None => violate("no TTL".into()),
                Some(left) if left > max => violate(format!("TTL {left:?} over {max:?}")),
                Some(_) => {}
            },
            Bound::Log { max_ttl, max_len, max_bytes } => {
                match left {
                    None => violate("no TTL".into()),
                    Some(left) if left > max_ttl => violate(format!("TTL {left:?} over {max_ttl:?}")),
                    Some(_) => {}
                }
                if len > max_len {
                    violate(format!("{len} entries, over {max_len}"));
                }
                // Redis's own overhead on top of what callers stored: per entry its header and
                // the byte-offset mark (~30 bytes), and per node of the stream (a node holds
                // one entry once entries pass stream-node-max-bytes / 2) the node, its master
                // entry and the allocator's size class: measured at ~1.3x for 3.6 KiB events.
                let allowed = max_bytes * 3 / 2 + 32 * len + 4096;
                if bytes > allowed {
                    violate(format!("{bytes} bytes in Redis, over {allowed} ({max_bytes} + overhead)"));
                }
            }
            Bound::Durable { max_len, max_bytes, .. } => {
                if max_len.is_some_and(|max| len > max) {
                    violate(format!("{len} entries, over {max_len:?}"));
                }
                if bytes > max_bytes {
                    violate(format!("{bytes} bytes, over {max_bytes}"));
                }
            }
        }
    }

    println!("{} keys under {prefix}:", keys.len());
    println!(
        "{:<42} {:>5} {:>14} {:>7} {:>9}  bound",
        "family", "keys", "max ttl left", "max len", "max bytes"
    );
    for family in FAMILIES {
        let Some(s) = seen.get(family.pattern) else { continue };
        let ttl = s.max_ttl.map_or("none".to_owned(), |t| format!("{}s", t.as_secs()));
        let bound = match family.bound {
            Bound::Ttl { max } => format!("ttl ≤ {}s", max.as_secs()),
            Bound::Log { max_ttl, max_len, max_bytes } => {
                format!("log: ttl ≤ {}s, ≤ {max_len} entries, ≤ {max_bytes} B", max_ttl.as_secs())
            }
            Bound::Durable { reason, max_len, max_bytes } => {
                let len = max_len.map_or(String::new(), |n| format!("≤ {n} entries, "));
                format!("durable ({reason}): {len}≤ {max_bytes} B")
            }
        };
        println!(
            "{:<42} {:>5} {:>14} {:>7} {:>9}  {bound}",
            family.pattern, s.keys, ttl, s.max_len, s.max_bytes
        );
    }
    let unseen: Vec<&str> = FAMILIES.iter().map(|f| f.pattern).filter(|p| !seen.contains_key(p)).collect();
    println!("families not written by this walkthrough: {unseen:?}");

    assert!(
        unknown.is_empty(),
        "key families nobody declared a bound for (add them to FAMILIES): {unknown:#?}"
    );
    assert!(violations.is_empty(), "key families over their bounds: {violations:#?}");
    // The two logs were driven to their caps, so their bounds were exercised, not just declared.
    let live = &seen["analytics:live:{owner}"];
    assert!(
        live.max_len > 10 && live.max_len < 120,
        "the byte bound binds on large events: {}",
        live.max_len
    );
    t.mesh.stop().await.unwrap();
}

/// Every feature that stores something, through the router.
async fn walk_through_everything(t: &mut TestMesh) {
    let (_, _, refresh) = t.user("bounds@example.com").await;
    let (_, admin, _) = t.user(ADMIN_EMAIL).await;

    // Refresh (rotation), reuse (revocation), a failed login (throttling state).
    let rotated =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_eq!(rotated.status, StatusCode::OK, "{:?}", rotated.body);
    let reused =
        t.call(Method::POST, "/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    reused.assert_problem(401);
    let wrong = t
        .call(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "bounds@example.com", "password": "nope-nope"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{:?}", wrong.body);
    let token = {
        let fresh = t.login("bounds@example.com").await;
        fresh.body["access_token"].as_str().unwrap().to_owned()
    };

    // Profile, quota, API keys (one used, one deleted).
    assert_eq!(t.call(Method::GET, "/v1/users/me", Some(&token), None).await.status, StatusCode::OK);
    let patched = t.call(Method::PATCH, "/v1/users/me", Some(&token), Some(json!({"bio": "Bounded."}))).await;
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    assert_eq!(t.call(Method::GET, "/v1/quota", Some(&token), None).await.status, StatusCode::OK);
    let key = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "ci"}))).await;
    assert_eq!(key.status, StatusCode::CREATED, "{:?}", key.body);
    let secret = format!("key:{}", key.body["key"].as_str().unwrap());
    assert_eq!(t.call(Method::GET, "/v1/users/me", Some(&secret), None).await.status, StatusCode::OK);
    let doomed = t.call(Method::POST, "/v1/auth/api-keys", Some(&token), Some(json!({"name": "old"}))).await;
    let doomed_id = doomed.body["id"].as_str().unwrap();
    let deleted = t.call(Method::DELETE, &format!("/v1/auth/api-keys/{doomed_id}"), Some(&token), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);

    // Articles (catalogue, response cache), an order with an Idempotency-Key, its events.
    let article = t.article(&admin, "Bounded teapot", 1250, 100).await;
    assert_eq!(t.call(Method::GET, "/v1/articles?q=teapot", Some(&token), None).await.status, StatusCode::OK);
    assert_eq!(
        t.call(Method::GET, &format!("/v1/articles/{article}"), Some(&token), None).await.status,
        StatusCode::OK
    );
    let order_body = json!({"items": [{"article_id": article, "quantity": 1}]});
    let order = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order_body.clone()),
            &[("idempotency-key", "b-1")],
        )
        .await;
    assert_eq!(order.status, StatusCode::CREATED, "{:?}", order.body);
    let order_id = order.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        t.call(Method::GET, &format!("/v1/orders/{order_id}"), Some(&token), None).await.status,
        StatusCode::OK
    );
    assert_eq!(t.call(Method::GET, "/v1/orders", Some(&token), None).await.status, StatusCode::OK);
    let mut events = SseStream::open(&t.base, &format!("/v1/orders/{order_id}/events"), &token, &[]).await;
    assert_eq!(events.next(Duration::from_secs(5)).await.expect("the created event").event, "created");
    drop(events);

    // Analytics: a live watcher, events up to the live log's byte bound, one too large, the
    // summary and the dashboard.
    let mut live = SseStream::open(&t.base, "/v1/analytics/live", &token, &[]).await;
    let big: serde_json::Map<String, serde_json::Value> =
        (0..7).map(|i| (format!("k{i}"), json!("v".repeat(500)))).collect();
    for _ in 0..100 {
        let body = json!({"type": "page.view", "properties": big});
        let recorded = t.call(Method::POST, "/v1/analytics/events", Some(&token), Some(body)).await;
        assert_eq!(recorded.status, StatusCode::ACCEPTED, "{:?}", recorded.body);
    }
    assert!(live.next(Duration::from_secs(5)).await.is_some(), "the watcher saw an event");
    drop(live);
    let huge: serde_json::Map<String, serde_json::Value> =
        (0..10).map(|i| (format!("k{i}"), json!("v".repeat(500)))).collect();
    let refused = t
        .call(
            Method::POST,
            "/v1/analytics/events",
            Some(&token),
            Some(json!({"type": "x", "properties": huge})),
        )
        .await;
    refused.assert_problem(413);
    assert!(refused.body["detail"].as_str().unwrap().contains("4096"), "names the limit: {:?}", refused.body);
    println!("too large an event: 413 {}", refused.body["detail"]);
    let summary = t.call(Method::GET, "/v1/analytics/summary?window=7d", Some(&token), None).await;
    assert_eq!(summary.body["total"], 100, "{:?}", summary.body);
    let dashboard = t.call(Method::GET, "/v1/dashboard", Some(&token), None).await;
    assert_eq!(dashboard.status, StatusCode::OK);

    // A queued order: both orders replicas down, accepted (202), created once they are back.
    for replica in 1..=2 {
        t.mesh.get_mut(Kind::Orders, replica).stop().await.unwrap();
    }
    let queued = t
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&token),
            Some(order_body),
            &[("idempotency-key", "b-queued")],
        )
        .await;
    assert_eq!(queued.status, StatusCode::ACCEPTED, "{:?}", queued.body);
    let queued_id = queued.body["id"].as_str().unwrap().to_owned();
    for replica in 1..=2 {
        t.mesh.restart(Kind::Orders, replica).await.unwrap();
    }
    let created = mesh_tests::wait_until(Duration::from_secs(30), || {
        let path = format!("/v1/orders/{queued_id}");
        let token = token.clone();
        let t = &*t;
        async move {
            let got = t.call(Method::GET, &path, Some(&token), None).await;
            got.status == StatusCode::OK && got.body["status"] == "created"
        }
    })
    .await;
    assert!(created, "the queued order was created after recovery");

    // Logout.
    let out = t.call(Method::POST, "/v1/auth/logout", Some(&token), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT, "{:?}", out.body);
}
