//! The `Store` contract, run against both backends: the embedded memory store and a real
//! `redis-server` started on a free port for each test.

use std::sync::Arc;
use std::time::Duration;

use mesh_core::store::{Bounded, LogBounds, Store, StoreConfig};
use mesh_tests::{RedisServer, unique_prefix};

/// A store under test; keeps its Redis server alive as long as the store is used.
struct Subject {
    store: Store,
    _redis: Option<RedisServer>,
}

async fn memory() -> Subject {
    Subject { store: Store::memory(), _redis: None }
}

async fn redis() -> Subject {
    let server = RedisServer::start().await.expect("redis-server starts");
    let cfg = StoreConfig {
        redis_url: Some(server.url()),
        key_prefix: unique_prefix("contract"),
        ..StoreConfig::default()
    };
    let store = Store::connect(&cfg).await.expect("connects to redis");
    assert_eq!(store.backend(), "redis");
    Subject { store, _redis: Some(server) }
}

/// Declares one contract test and runs it on both backends.
macro_rules! contract {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn memory_backend() {
                let subject = memory().await;
                ($body)(subject.store.clone()).await;
            }

            #[tokio::test]
            async fn redis_backend() {
                let subject = redis().await;
                ($body)(subject.store.clone()).await;
            }
        }
    };
}

contract!(get_set_delete_round_trip, |s: Store| async move {
    assert_eq!(s.get("a").await.unwrap(), None);
    s.set("a", "1", None).await.unwrap();
    assert_eq!(s.get("a").await.unwrap().as_deref(), Some("1"));
    s.set("a", "2", None).await.unwrap();
    assert_eq!(s.get("a").await.unwrap().as_deref(), Some("2"));
    assert!(s.delete("a").await.unwrap());
    assert!(!s.delete("a").await.unwrap());
    assert_eq!(s.get("a").await.unwrap(), None);
    s.ping().await.unwrap();
});

contract!(get_many_keeps_order_and_gaps, |s: Store| async move {
    s.set("x", "1", None).await.unwrap();
    s.set("z", "3", None).await.unwrap();
    let got = s.get_many(&["x".into(), "y".into(), "z".into()]).await.unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("3".into())]);
    assert!(s.get_many(&[]).await.unwrap().is_empty());
});

contract!(set_nx_sets_only_once, |s: Store| async move {
    assert!(s.set_nx("k", "first", None).await.unwrap());
    assert!(!s.set_nx("k", "second", None).await.unwrap());
    assert_eq!(s.get("k").await.unwrap().as_deref(), Some("first"));
});

contract!(set_nx_is_won_by_exactly_one_of_many_racers, |s: Store| async move {
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.set_nx("race", &i.to_string(), None).await.unwrap() }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
});

contract!(values_expire_after_their_ttl, |s: Store| async move {
    s.set("short", "v", Some(Duration::from_millis(60))).await.unwrap();
    let ttl = s.ttl("short").await.unwrap().expect("has a ttl");
    assert!(ttl <= Duration::from_millis(60), "{ttl:?}");
    s.set("forever", "v", None).await.unwrap();
    assert_eq!(s.ttl("forever").await.unwrap(), None);
    assert_eq!(s.ttl("missing").await.unwrap(), None);
    let gone = mesh_tests::wait_until(Duration::from_secs(2), || {
        let s = s.clone();
        async move { s.get("short").await.unwrap().is_none() }
    })
    .await;
    assert!(gone, "value still there after its ttl");
    // An expired key is free again for set_nx.
    assert!(s.set_nx("short", "again", None).await.unwrap());
});

contract!(replace_swaps_only_existing_values_and_once, |s: Store| async move {
    assert_eq!(s.replace("r", "new", None).await.unwrap(), None);
    assert_eq!(s.get("r").await.unwrap(), None, "replace must not create");
    s.set("r", "active", None).await.unwrap();
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.replace("r", "used", None).await.unwrap() }));
    }
    let mut saw_active = 0;
    for t in tasks {
        if t.await.unwrap().as_deref() == Some("active") {
            saw_active += 1;
        }
    }
    assert_eq!(saw_active, 1, "exactly one swapper sees the original value");
    assert_eq!(s.get("r").await.unwrap().as_deref(), Some("used"));
});

contract!(renew_if_eq_renews_only_the_callers_own_value, |s: Store| async move {
    assert!(!s.renew_if_eq("lease", "mine", Duration::from_secs(60)).await.unwrap(), "nothing to renew");
    s.set("lease", "theirs", Some(Duration::from_secs(5))).await.unwrap();
    assert!(!s.renew_if_eq("lease", "mine", Duration::from_secs(60)).await.unwrap(), "not ours");
    let ttl = s.ttl("lease").await.unwrap().unwrap();
    assert!(ttl <= Duration::from_secs(5), "another holder's expiry is untouched: {ttl:?}");
    assert!(s.renew_if_eq("lease", "theirs", Duration::from_secs(60)).await.unwrap());
    let ttl = s.ttl("lease").await.unwrap().unwrap();
    assert!(ttl > Duration::from_secs(5), "renewed: {ttl:?}");
    assert_eq!(s.get("lease").await.unwrap().as_deref(), Some("theirs"), "the value stays");
});

contract!(delete_if_eq_deletes_only_when_the_value_is_equal, |s: Store| async move {
    assert!(!s.delete_if_eq("claim", "mine").await.unwrap(), "nothing to delete");
    s.set("claim", "theirs", None).await.unwrap();
    assert!(!s.delete_if_eq("claim", "mine").await.unwrap());
    assert_eq!(s.get("claim").await.unwrap().as_deref(), Some("theirs"), "another value stays");
    assert!(s.delete_if_eq("claim", "theirs").await.unwrap());
    assert_eq!(s.get("claim").await.unwrap(), None);
    assert!(!s.delete_if_eq("claim", "theirs").await.unwrap(), "deleted once");
    // Only strings compare: a hash or an index under the key is left alone, not an error.
    s.hash_incr("h", "f", 1, None).await.unwrap();
    assert!(!s.delete_if_eq("h", "1").await.unwrap());
    s.index_add("i", "m").await.unwrap();
    assert!(!s.delete_if_eq("i", "m").await.unwrap());
    assert_eq!(s.index_page("i", None, 10, false).await.unwrap(), ["m"]);
});

contract!(delete_if_eq_is_won_by_exactly_one_of_many_racers, |s: Store| async move {
    s.set("claim", "v", None).await.unwrap();
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..32 {
        let s = s.clone();
        // A few racers hold a stale value; they must never delete.
        let expected = if i % 4 == 0 { "stale" } else { "v" };
        tasks.push(tokio::spawn(async move { s.delete_if_eq("claim", expected).await.unwrap() }));
    }
    let mut deleted = 0;
    for t in tasks {
        deleted += usize::from(t.await.unwrap());
    }
    assert_eq!(deleted, 1);
    assert_eq!(s.get("claim").await.unwrap(), None);
});

contract!(add_bounded_applies_within_bounds_and_refuses_outside, |s: Store| async move {
    assert_eq!(s.add_bounded("c", 3, 0, 5, None).await.unwrap(), Bounded::Applied(3));
    assert_eq!(s.add_bounded("c", 2, 0, 5, None).await.unwrap(), Bounded::Applied(5));
    assert_eq!(s.add_bounded("c", 1, 0, 5, None).await.unwrap(), Bounded::Refused(5));
    assert_eq!(s.add_bounded("c", -6, 0, 5, None).await.unwrap(), Bounded::Refused(5));
    assert_eq!(s.add_bounded("c", -5, 0, 5, None).await.unwrap(), Bounded::Applied(0));
    assert_eq!(s.add_bounded("c", 1, 0, i64::MAX, None).await.unwrap(), Bounded::Applied(1));
});

contract!(add_bounded_ttl_is_set_once_making_a_fixed_window, |s: Store| async move {
    s.add_bounded("w", 1, 0, 100, Some(Duration::from_secs(30))).await.unwrap();
    let first = s.ttl("w").await.unwrap().expect("window has a ttl");
    s.add_bounded("w", 1, 0, 100, Some(Duration::from_secs(300))).await.unwrap();
    let second = s.ttl("w").await.unwrap().expect("window keeps its ttl");
    assert!(second <= first, "the window was extended: {first:?} -> {second:?}");
});

contract!(add_bounded_never_overshoots_under_concurrency, |s: Store| async move {
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move { s.add_bounded("q", 1, 0, 50, None).await.unwrap() }));
    }
    let mut applied = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Bounded::Applied(_)) {
            applied += 1;
        }
    }
    assert_eq!(applied, 50);
    assert_eq!(s.get("q").await.unwrap().as_deref(), Some("50"));
});

contract!(index_pages_in_both_directions_with_an_exclusive_cursor, |s: Store| async move {
    for m in ["b", "d", "a", "c", "e"] {
        s.index_add("idx", m).await.unwrap();
    }
    s.index_add("idx", "c").await.unwrap(); // adding twice keeps one
    assert_eq!(s.index_page("idx", None, 2, false).await.unwrap(), ["a", "b"]);
    assert_eq!(s.index_page("idx", Some("b"), 2, false).await.unwrap(), ["c", "d"]);
    assert_eq!(s.index_page("idx", Some("d"), 10, false).await.unwrap(), ["e"]);
    assert_eq!(s.index_page("idx", None, 2, true).await.unwrap(), ["e", "d"]);
    assert_eq!(s.index_page("idx", Some("d"), 10, true).await.unwrap(), ["c", "b", "a"]);
    assert!(s.index_page("idx", Some("a"), 10, true).await.unwrap().is_empty());
    assert!(s.index_remove("idx", "c").await.unwrap());
    assert!(!s.index_remove("idx", "c").await.unwrap());
    assert_eq!(s.index_page("idx", Some("b"), 1, false).await.unwrap(), ["d"]);
    assert!(s.index_page("missing", None, 10, false).await.unwrap().is_empty());
});

contract!(hashes_count_per_field_and_read_many_at_once, |s: Store| async move {
    assert_eq!(s.hash_incr("h1", "click", 1, None).await.unwrap(), 1);
    assert_eq!(s.hash_incr("h1", "click", 2, None).await.unwrap(), 3);
    s.hash_incr("h1", "view", 1, Some(Duration::from_secs(60))).await.unwrap();
    s.hash_incr("h2", "view", 5, None).await.unwrap();
    let mut all = s.hash_get_all_many(&["h1".into(), "none".into(), "h2".into()]).await.unwrap();
    all[0].sort();
    assert_eq!(all[0], vec![("click".to_string(), 3), ("view".to_string(), 1)]);
    assert!(all[1].is_empty());
    assert_eq!(all[2], vec![("view".to_string(), 5)]);
});

contract!(json_helpers_round_trip_and_report_corruption, |s: Store| async move {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct V {
        n: u32,
    }
    s.set_json("j", &V { n: 7 }, None).await.unwrap();
    assert_eq!(s.get_json::<V>("j").await.unwrap(), Some(V { n: 7 }));
    assert!(!s.set_nx_json("j", &V { n: 8 }, None).await.unwrap());
    s.set("bad", "{not json", None).await.unwrap();
    let err = s.get_json::<V>("bad").await.unwrap_err();
    assert!(err.to_string().contains("bad"), "{err}");
});

contract!(prefixes_isolate_stores_sharing_a_backend, |s: Store| async move {
    s.set("shared-name", "mine", None).await.unwrap();
    assert_eq!(s.get("shared-name").await.unwrap().as_deref(), Some("mine"));
});

/// The ids of `entries`, for comparing deliveries.
fn ids(entries: &[mesh_core::store::StreamEntry]) -> Vec<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

contract!(stream_entries_go_to_one_consumer_of_a_group_in_order, |s: Store| async move {
    // Appended before the group exists: still delivered (the group starts at the beginning).
    let first = s.stream_add("q", &[("n", "1"), ("payload", "{\"a\":1}")]).await.unwrap();
    s.stream_create_group("q", "g").await.unwrap();
    s.stream_create_group("q", "g").await.unwrap(); // idempotent
    let second = s.stream_add("q", &[("n", "2")]).await.unwrap();
    let third = s.stream_add("q", &[("n", "3")]).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(s.stream_len("q").await.unwrap(), 3);

    let to_a = s.stream_read("q", "g", "a", 2).await.unwrap();
    assert_eq!(ids(&to_a), [first.as_str(), second.as_str()]);
    assert_eq!(to_a[0].field("payload"), Some("{\"a\":1}"));
    assert_eq!(to_a[0].fields[0], ("n".to_string(), "1".to_string()), "fields keep their order");
    let to_b = s.stream_read("q", "g", "b", 10).await.unwrap();
    assert_eq!(ids(&to_b), [third.as_str()], "what a got is never delivered to b");
    assert!(s.stream_read("q", "g", "a", 10).await.unwrap().is_empty());
    assert!(s.stream_read("q", "g", "b", 10).await.unwrap().is_empty());

    // Unacknowledged entries stay with their consumer, to retry.
    assert_eq!(
        ids(&s.stream_read_pending("q", "g", "a", 10).await.unwrap()),
        [first.as_str(), second.as_str()]
    );
    assert_eq!(ids(&s.stream_read_pending("q", "g", "b", 10).await.unwrap()), [third.as_str()]);
    assert_eq!(ids(&s.stream_read_pending("q", "g", "a", 1).await.unwrap()), [first.as_str()]);
    assert!(s.stream_read_pending("q", "g", "nobody", 10).await.unwrap().is_empty());

    // Another group would see everything again; a missing group is an error, not silence.
    assert!(s.stream_read("q", "missing", "a", 10).await.is_err());
    assert!(s.stream_read("nothing", "g", "a", 10).await.is_err());
    assert_eq!(s.stream_len("nothing").await.unwrap(), 0);
});

contract!(stream_acks_remove_entries_for_good, |s: Store| async move {
    s.stream_create_group("q", "g").await.unwrap();
    let one = s.stream_add("q", &[("n", "1")]).await.unwrap();
    let two = s.stream_add("q", &[("n", "2")]).await.unwrap();
    s.stream_read("q", "g", "a", 10).await.unwrap();
    assert_eq!(s.stream_ack("q", "g", std::slice::from_ref(&one)).await.unwrap(), 1);
    assert_eq!(s.stream_ack("q", "g", std::slice::from_ref(&one)).await.unwrap(), 0, "acked once");
    assert_eq!(s.stream_ack("q", "g", &[]).await.unwrap(), 0);
    assert_eq!(s.stream_len("q").await.unwrap(), 1, "the acked entry left the stream");
    assert_eq!(ids(&s.stream_read_pending("q", "g", "a", 10).await.unwrap()), [two.as_str()]);
    assert_eq!(s.stream_ack("q", "g", &[two]).await.unwrap(), 1);
    assert_eq!(s.stream_len("q").await.unwrap(), 0);
    assert!(s.stream_read_pending("q", "g", "a", 10).await.unwrap().is_empty());
});

contract!(stream_entries_pending_too_long_are_claimed_and_acked_ones_never, |s: Store| async move {
    let idle = Duration::from_millis(150);
    s.stream_create_group("q", "g").await.unwrap();
    let done = s.stream_add("q", &[("n", "done")]).await.unwrap();
    let stuck = s.stream_add("q", &[("n", "stuck")]).await.unwrap();
    // Consumer a takes both, finishes one, and dies holding the other.
    assert_eq!(s.stream_read("q", "g", "a", 10).await.unwrap().len(), 2);
    s.stream_ack("q", "g", std::slice::from_ref(&done)).await.unwrap();
    assert!(s.stream_claim("q", "g", "b", idle, 10).await.unwrap().is_empty(), "not idle long enough yet");

    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let claimed = loop {
        let claimed = s.stream_claim("q", "g", "b", idle, 10).await.unwrap();
        if !claimed.is_empty() {
            break claimed;
        }
        assert!(std::time::Instant::now() < deadline, "the idle entry was never claimable");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ids(&claimed), [stuck.as_str()], "only the unacknowledged entry");
    assert_eq!(claimed[0].field("n"), Some("stuck"));
    // It is b's now: gone from a's pending list, in b's, and its idle time restarted.
    assert!(s.stream_read_pending("q", "g", "a", 10).await.unwrap().is_empty());
    assert_eq!(ids(&s.stream_read_pending("q", "g", "b", 10).await.unwrap()), [stuck.as_str()]);
    assert!(s.stream_claim("q", "g", "c", idle, 10).await.unwrap().is_empty());
    // Once acknowledged, no one can claim it, however long they wait.
    s.stream_ack("q", "g", &[stuck]).await.unwrap();
    tokio::time::sleep(idle * 2).await;
    assert!(s.stream_claim("q", "g", "c", idle, 10).await.unwrap().is_empty());
    assert!(s.stream_claim("q", "g", "c", Duration::ZERO, 10).await.unwrap().is_empty());
});

contract!(stream_claims_are_bounded_by_count_and_oldest_first, |s: Store| async move {
    s.stream_create_group("q", "g").await.unwrap();
    let mut added = Vec::new();
    for n in 0..5 {
        added.push(s.stream_add("q", &[("n", &n.to_string())]).await.unwrap());
    }
    s.stream_read("q", "g", "a", 10).await.unwrap();
    let first = s.stream_claim("q", "g", "b", Duration::ZERO, 2).await.unwrap();
    assert_eq!(ids(&first), added[..2]);
    let rest = s.stream_claim("q", "g", "c", Duration::from_secs(60), 10).await.unwrap();
    assert!(rest.is_empty(), "claimed entries restart their idle time");
});

contract!(stream_readers_racing_never_share_an_entry, |s: Store| async move {
    s.stream_create_group("q", "g").await.unwrap();
    for n in 0..100 {
        s.stream_add("q", &[("n", &n.to_string())]).await.unwrap();
    }
    let s = Arc::new(s);
    let mut tasks = Vec::new();
    for c in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let batch = s.stream_read("q", "g", &format!("c{c}"), 3).await.unwrap();
                if batch.is_empty() {
                    return got;
                }
                got.extend(batch.into_iter().map(|e| e.field("n").unwrap().to_owned()));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (100, 100), "each entry delivered exactly once");
});

#[tokio::test]
async fn redis_prefixes_keep_two_stores_apart() {
    let server = RedisServer::start().await.unwrap();
    let open = |prefix: &str| {
        let cfg = StoreConfig {
            redis_url: Some(server.url()),
            key_prefix: prefix.into(),
            ..StoreConfig::default()
        };
        async move { Store::connect(&cfg).await.unwrap() }
    };
    let a = open("a:").await;
    let b = open("b:").await;
    a.set("k", "from-a", None).await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), None);
}

#[tokio::test]
async fn a_dead_redis_fails_calls_fast_as_unavailable_and_recovers_when_back() {
    let mut server = RedisServer::start().await.unwrap();
    let cfg = StoreConfig {
        redis_url: Some(server.url()),
        key_prefix: unique_prefix("outage"),
        command_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_millis(200),
    };
    let store = Store::connect(&cfg).await.unwrap();
    store.set("k", "v", None).await.unwrap();

    server.kill();
    let started = std::time::Instant::now();
    let err = store.get("k").await.unwrap_err();
    assert!(matches!(err, mesh_core::StoreError::Unavailable(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    server.restart().await.unwrap();
    let recovered = mesh_tests::wait_until(Duration::from_secs(10), || {
        let store = store.clone();
        async move { store.set("k", "again", None).await.is_ok() }
    })
    .await;
    assert!(recovered, "store did not reconnect after redis came back");
    assert_eq!(store.get("k").await.unwrap().as_deref(), Some("again"));
}

#[tokio::test]
async fn a_store_whose_redis_is_down_is_made_at_once_and_its_calls_fail_clearly() {
    // The connection is made on first use, so a component starts while Redis is down; its calls
    // fail, quickly, as Unavailable, and fail at once for a moment after a failed connect.
    let cfg = StoreConfig {
        redis_url: Some("redis://127.0.0.1:1".into()),
        connect_timeout: Duration::from_millis(200),
        ..StoreConfig::default()
    };
    let store = Store::connect(&cfg).await.expect("no connection is made yet");
    let err = store.get("k").await.unwrap_err();
    assert!(matches!(err, mesh_core::StoreError::Unavailable(_)), "{err:?}");
    let started = std::time::Instant::now();
    let again = store.get("k").await.unwrap_err();
    assert!(again.to_string().contains("not connected"), "{again}");
    assert!(started.elapsed() < Duration::from_millis(100), "fails at once right after a failed connect");
    assert!(Store::connect(&StoreConfig { redis_url: Some("not a url".into()), ..cfg }).await.is_err());
}

#[tokio::test]
async fn named_memory_stores_are_shared_within_the_process_and_private_ones_are_not() {
    let named = |name: &str| {
        let cfg = StoreConfig { redis_url: Some(format!("memory://{name}")), ..StoreConfig::default() };
        async move { Store::connect(&cfg).await.unwrap() }
    };
    let name = mesh_core::ids::new_id();
    let a = named(&name).await;
    let b = named(&name).await;
    a.set("k", "shared", None).await.unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some("shared"));
    assert_eq!(named("other").await.get("k").await.unwrap(), None);
    assert_eq!(Store::memory().get("k").await.unwrap(), None);
}

/// Bounds loose enough that only the count or the bytes under test bind.
fn bounds(max_len: usize, max_bytes: usize) -> LogBounds {
    LogBounds { max_len, max_bytes, ttl: Duration::from_secs(60) }
}

contract!(a_log_is_read_after_any_id_and_stays_bounded, |s: Store| async move {
    assert_eq!(s.log_last_id("log").await.unwrap(), None);
    assert!(s.log_after("log", None, 10).await.unwrap().is_empty());
    let first = s.log_append("log", &[("n", "1")], bounds(1000, 1 << 20)).await.unwrap();
    let second = s.log_append("log", &[("n", "2"), ("data", "{}")], bounds(1000, 1 << 20)).await.unwrap();
    assert_eq!(s.log_last_id("log").await.unwrap().as_deref(), Some(second.as_str()));

    let all = s.log_after("log", None, 10).await.unwrap();
    assert_eq!(ids(&all), [first.as_str(), second.as_str()]);
    // Exactly what was appended: no bookkeeping field of a backend shows.
    assert_eq!(all[1].fields, [("n".to_owned(), "2".to_owned()), ("data".to_owned(), "{}".to_owned())]);
    // Reading takes nothing away: every reader sees every entry after its own position.
    assert_eq!(ids(&s.log_after("log", Some(&first), 10).await.unwrap()), [second.as_str()]);
    assert!(s.log_after("log", Some(&second), 10).await.unwrap().is_empty());
    assert_eq!(ids(&s.log_after("log", None, 1).await.unwrap()), [first.as_str()]);
    assert!(s.log_after("log", Some("0-0"), 10).await.unwrap().len() == 2);
    assert!(s.log_after("log", Some("+"), 10).await.is_err(), "not an id");
    assert!(s.log_after("log", Some("1-x"), 10).await.is_err(), "not an id");
});

contract!(a_log_keeps_exactly_its_newest_max_len_entries, |s: Store| async move {
    for n in 0..400 {
        s.log_append("capped", &[("n", &n.to_string())], bounds(10, 1 << 20)).await.unwrap();
    }
    let kept = s.log_after("capped", None, 1000).await.unwrap();
    let kept: Vec<&str> = kept.iter().map(|e| e.field("n").unwrap()).collect();
    let newest: Vec<String> = (390..400).map(|n| n.to_string()).collect();
    assert_eq!(kept, newest, "the newest ten, and only them");
    assert_eq!(s.stream_len("capped").await.unwrap(), 10);
});

contract!(a_log_keeps_its_newest_entries_within_max_bytes, |s: Store| async move {
    // Each entry counts its field names and values: "n" + 3 digits + "pad" + the padding.
    let entry = |n: usize, pad: usize| (format!("{n:03}"), "x".repeat(pad));
    let size = |pad: usize| 1 + 3 + 3 + pad;
    let max_bytes = 1000;
    let mut sizes = Vec::new();
    for n in 0..200 {
        // Sizes vary, so a bound derived from a count would be wrong both ways.
        let pad = [10, 200, 40, 90, 5][n % 5];
        let (id, padding) = entry(n, pad);
        s.log_append("bytes", &[("n", &id), ("pad", &padding)], bounds(1000, max_bytes)).await.unwrap();
        sizes.push(size(pad));
    }
    let kept = s.log_after("bytes", None, 1000).await.unwrap();
    let held: usize =
        kept.iter().map(|e| e.fields.iter().map(|(f, v)| f.len() + v.len()).sum::<usize>()).sum();
    assert!(held <= max_bytes, "{held} bytes kept");
    // As many of the newest as fit, not fewer: one more would break the bound.
    let next_older = sizes[sizes.len() - 1 - kept.len()];
    assert!(held + next_older > max_bytes, "{held} + {next_older} would have fit");
    assert_eq!(kept.last().unwrap().field("n"), Some("199"));
    println!("{} entries, {held} of {max_bytes} bytes kept", kept.len());

    // One entry over the bound is the whole log: the newest always stays.
    let huge = "y".repeat(4 * max_bytes);
    let id = s.log_append("bytes", &[("n", "big"), ("pad", &huge)], bounds(1000, max_bytes)).await.unwrap();
    assert_eq!(ids(&s.log_after("bytes", None, 1000).await.unwrap()), [id.as_str()]);
    s.log_append("bytes", &[("n", "after"), ("pad", "")], bounds(1000, max_bytes)).await.unwrap();
    let kept = s.log_after("bytes", None, 1000).await.unwrap();
    assert_eq!(kept.len(), 1, "the big one went as soon as a newer entry came");
    assert_eq!(kept[0].field("n"), Some("after"));
});

contract!(a_log_expires_after_its_ttl_and_each_append_renews_it, |s: Store| async move {
    let short = LogBounds { max_len: 10, max_bytes: 1000, ttl: Duration::from_millis(300) };
    s.log_append("ttl", &[("n", "1")], short).await.unwrap();
    let left = s.ttl("ttl").await.unwrap().expect("a log expires");
    assert!(left > Duration::ZERO && left <= short.ttl, "{left:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.log_append("ttl", &[("n", "2")], short).await.unwrap();
    assert!(s.ttl("ttl").await.unwrap().unwrap() > Duration::from_millis(200), "renewed");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.log_after("ttl", None, 10).await.unwrap().len(), 2, "alive: renewed 200ms ago");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(s.log_after("ttl", None, 10).await.unwrap().is_empty(), "expired");
    assert_eq!(s.log_last_id("ttl").await.unwrap(), None);
    assert_eq!(s.ttl("ttl").await.unwrap(), None);
    // An expired log starts afresh.
    s.log_append("ttl", &[("n", "3")], short).await.unwrap();
    assert_eq!(s.log_after("ttl", None, 10).await.unwrap().len(), 1);
});

contract!(ttl_answers_for_every_kind_of_key, |s: Store| async move {
    let hour = Duration::from_secs(3600);
    s.set("string", "v", Some(hour)).await.unwrap();
    s.hash_incr("hash", "f", 1, Some(hour)).await.unwrap();
    s.log_append("log", &[("f", "v")], LogBounds { max_len: 1, max_bytes: 100, ttl: hour }).await.unwrap();
    for key in ["string", "hash", "log"] {
        let left = s.ttl(key).await.unwrap().unwrap_or_else(|| panic!("{key} has a ttl"));
        assert!(left > hour - Duration::from_secs(60) && left <= hour, "{key}: {left:?}");
    }
    s.set("permanent", "v", None).await.unwrap();
    s.stream_add("queue", &[("f", "v")]).await.unwrap();
    for key in ["permanent", "queue", "absent"] {
        assert_eq!(s.ttl(key).await.unwrap(), None, "{key}");
    }
});
