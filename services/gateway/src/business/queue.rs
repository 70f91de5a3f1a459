//! The durable order queue: `POST /v1/orders` while the orders service is down.
//!
//! An order whose create call failed as an outage is appended to the store stream the orders
//! service drains when it is back (`orders:queue`, format below), and the client gets `202` with
//! the id the order will have. Never `202` unless the append succeeded: a store failure is a 503.
//!
//! Store records (the gateway's own, expiring after [`RECORD_TTL`], as long as the orders
//! service remembers an Idempotency-Key):
//!
//! | key                           | value                                                   |
//! |-------------------------------|---------------------------------------------------------|
//! | `gw:queued-key:{owner}:{key}` | [`KeyBinding`]: the key's order id, its items' fingerprint |
//! | `gw:queued:{owner}:{id}`      | [`QueuedOrder`]: what `GET /v1/orders/{id}` shows meanwhile |
//!
//! The binding is made with `set_nx`, so a key replayed during the outage gets the id it got
//! first, and a queued record already there means the order is queued already: the replay is
//! answered without appending again. (Two replays racing may both append; the orders service
//! creates one order per key whatever the number of entries.) A successful create also binds
//! the key to the order it made, so a replay during a later outage answers that order's id.
//! When the service is up, a key with a binding sends its id along as `order_id`, so an order
//! queued and then retried by the client keeps the id the client was given.
//!
//! Entry format (owned by the orders service, `orders_service::queue`; a test below checks this
//! side against it): field `order` = `{owner_id, idempotency_key, order_id, items: [{article_id,
//! quantity}]}` as JSON, field `request_id` = the request that queued it. A queued order also
//! gets a "queued" event in its status log (owned by `orders_service::events`, checked the same
//! way): `orders:events:{order_id}`, fields `owner_id`, `status`, `reason`, `at`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mesh_core::ids;
use mesh_core::store::{LogBounds, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The stream the orders service drains (under the store's key prefix, shared with it).
pub const STREAM: &str = "orders:queue";
const FIELD_ORDER: &str = "order";
const FIELD_REQUEST_ID: &str = "request_id";

/// How long the gateway remembers a key's order id and a queued order: the orders service's
/// default Idempotency-Key lifetime.
pub const RECORD_TTL: Duration = Duration::from_secs(24 * 3600);

/// Bound on the store calls made on the way of a live request (the binding lookup before the
/// call, the binding after it); past it they are skipped, as the orders service decides anyway.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);

/// Bound on queueing one order as a whole. Past it the answer is 503: the append may or may not
/// have landed, and a retry appending again is harmless.
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// `QueuedOrder::status`.
pub const STATUS_QUEUED: &str = "queued";

/// How much the order queue may hold (`order_queue` of the gateway config). Past either bound a
/// new order is refused with 503 instead of queued: the queue is never trimmed (an accepted
/// order is never dropped), so it is bounded by refusing, before anything is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueLimits {
    /// Entries waiting at most (each at most one order of ≤ 50 lines, ~3 KiB), across every
    /// gateway: checked before each append, so concurrent appends may pass it by a few.
    /// Default: 10000 (~30 MiB at most).
    pub max_len: u64,
    /// Oldest an entry waiting may be. Exactly once per key rests on the orders service
    /// remembering each Idempotency-Key (`idempotency_ttl`, 24h) for longer than any entry waits:
    /// once the oldest entry is older than this, the orders service is not draining, and new
    /// orders are refused rather than queued to wait longer still. An entry so waits at most
    /// `max_age` plus the drain, far below 24h. Keep it at most a quarter of the orders
    /// service's `idempotency_ttl`. Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub max_age: Duration,
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self { max_len: 10_000, max_age: Duration::from_secs(3600) }
    }
}

/// What an Idempotency-Key of an owner is bound to at the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyBinding {
    pub order_id: String,
    /// [`fingerprint`] of the items it was first sent with.
    pub fingerprint: String,
}

/// An order accepted into the queue and not yet created, as the client sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedOrder {
    pub id: String,
    /// Always `queued`.
    pub status: String,
    pub items: Vec<QueuedLine>,
    /// Unix seconds when it was queued.
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedLine {
    pub article_id: String,
    pub quantity: u32,
}

/// The `order` field of an entry.
#[derive(Serialize)]
struct Entry<'a> {
    owner_id: &'a str,
    idempotency_key: &'a str,
    order_id: &'a str,
    items: &'a [QueuedLine],
}

/// Why an order could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The key is bound to other items: the same refusal the orders service would give.
    #[error("Idempotency-Key already used with a different request")]
    KeyReused,
    /// The store failed or was too slow: nothing durable was written (or we cannot tell).
    #[error("order queue unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for QueueError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

/// A queued order, and whether this request appended it (`false`: a replay found it queued).
#[derive(Debug)]
pub struct Queued {
    pub order: QueuedOrder,
    pub appended: bool,
}

fn binding_key(owner: &str, key: &str) -> String {
    format!("gw:queued-key:{owner}:{key}")
}

fn record_key(owner: &str, id: &str) -> String {
    format!("gw:queued:{owner}:{id}")
}

/// SHA-256 (hex) over the items sorted by article, one `<article_id> <quantity>\n` each: the
/// order items are listed in does not change what is ordered.
pub fn fingerprint(items: &[QueuedLine]) -> String {
    let mut lines: Vec<(&str, u32)> = items.iter().map(|l| (l.article_id.as_str(), l.quantity)).collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for (article, quantity) in lines {
        hasher.update(format!("{article} {quantity}\n"));
    }
    hex::encode(hasher.finalize())
}

/// Lookups that may fail without failing the request go through the store tier that fails
/// open (timeout, miss, rest); the queue's writes do not: losing them must refuse (503).
fn lookups(store: &Store) -> mesh_core::store::FailOpen {
    store.fail_open("order-queue-lookups").with_timeout(LOOKUP_TIMEOUT)
}

/// The order id to send with a live create: the key's binding if it is to these items.
pub async fn bound_order_id(store: &Store, owner: &str, key: &str, fingerprint: &str) -> Option<String> {
    let binding =
        lookups(store).run("binding", store.get_json::<KeyBinding>(&binding_key(owner, key))).await??;
    (binding.fingerprint == fingerprint).then_some(binding.order_id)
}

/// After a successful create: binds the key to the order it made (best effort).
pub async fn bind_created(store: &Store, owner: &str, key: &str, fingerprint: &str, order_id: &str) {
    let binding = KeyBinding { order_id: order_id.to_owned(), fingerprint: fingerprint.to_owned() };
    lookups(store).run("bind", store.set_json(&binding_key(owner, key), &binding, Some(RECORD_TTL))).await;
}

/// The queued order `id` of `owner`, if the gateway remembers one (best effort).
pub async fn queued(store: &Store, owner: &str, id: &str) -> Option<QueuedOrder> {
    if !ids::is_id(id) {
        return None;
    }
    lookups(store).run("record", store.get_json::<QueuedOrder>(&record_key(owner, id))).await?
}

/// Appends the order to the queue (once per key, within `limits`) and records it for `GET`.
pub async fn enqueue(
    store: &Store,
    limits: &QueueLimits,
    request_id: &str,
    owner: &str,
    key: &str,
    items: &[QueuedLine],
) -> Result<Queued, QueueError> {
    let once = enqueue_once(store, limits, request_id, owner, key, items);
    match tokio::time::timeout(ENQUEUE_TIMEOUT, once).await {
        Ok(result) => result,
        Err(_) => Err(QueueError::Unavailable(format!("no answer within {ENQUEUE_TIMEOUT:?}"))),
    }
}

async fn enqueue_once(
    store: &Store,
    limits: &QueueLimits,
    request_id: &str,
    owner: &str,
    key: &str,
    items: &[QueuedLine],
) -> Result<Queued, QueueError> {
    let binding = bind(store, owner, key, fingerprint(items)).await?;
    let record_key = record_key(owner, &binding.order_id);
    if let Some(order) = store.get_json::<QueuedOrder>(&record_key).await? {
        return Ok(Queued { order, appended: false });
    }
    // A replay of a queued order is answered above whatever the backlog; only new ones are refused.
    check_backlog(store, limits).await?;
    let lines = items.to_vec();
    let entry = Entry { owner_id: owner, idempotency_key: key, order_id: &binding.order_id, items: &lines };
    let entry = serde_json::to_string(&entry).map_err(|e| QueueError::Unavailable(e.to_string()))?;
    // Before the entry: a consumer's "created" or "rejected" must come after it in the order's log.
    log_queued(store, owner, &binding.order_id).await;
    let entry_id = store.stream_add(STREAM, &[(FIELD_ORDER, &entry), (FIELD_REQUEST_ID, request_id)]).await?;
    let order = QueuedOrder {
        id: binding.order_id,
        status: STATUS_QUEUED.into(),
        items: lines,
        created_at: ids::unix_now(),
    };
    // The entry is durable now; without this record a GET during the outage says 503 instead
    // of "queued", and a replay appends again (harmless). Neither is worth failing the request.
    if let Err(e) = store.set_json(&record_key, &order, Some(RECORD_TTL)).await {
        tracing::warn!(order = %order.id, error = %e, "queued an order but could not record it");
    }
    metrics::counter!("orders_queue_enqueued_total").increment(1);
    tracing::info!(request_id, order = %order.id, owner, entry = %entry_id, "order queued: orders is down");
    Ok(Queued { order, appended: true })
}

/// Refuses a new entry when the queue holds `max_len` entries or its oldest waits `max_age`
/// already. Both reads at once: one round trip of latency, on the outage path only.
async fn check_backlog(store: &Store, limits: &QueueLimits) -> Result<(), QueueError> {
    let (len, oldest) = tokio::join!(store.stream_len(STREAM), store.log_after(STREAM, None, 1));
    let len = len?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let waited = oldest?.first().and_then(|entry| entry_age(&entry.id, now_ms));
    if len >= limits.max_len || waited.is_some_and(|age| age >= limits.max_age) {
        metrics::counter!("orders_queue_refused_total").increment(1);
        return Err(QueueError::Unavailable(format!(
            "order queue over its bounds: {len} entries (max_len {}), oldest waiting {waited:?} (max_age {:?})",
            limits.max_len, limits.max_age
        )));
    }
    Ok(())
}

/// How long ago the entry `id` (`<unix ms>-<seq>`) was appended, from its id.
fn entry_age(id: &str, now_ms: u64) -> Option<Duration> {
    let ms: u64 = id.split_once('-')?.0.parse().ok()?;
    Some(Duration::from_millis(now_ms.saturating_sub(ms)))
}

/// The status log of an order and what it keeps (`orders_service::events`, whose default
/// bounds these are; a test below checks they agree).
fn events_key(order_id: &str) -> String {
    format!("orders:events:{order_id}")
}
const EVENTS_BOUNDS: LogBounds =
    LogBounds { max_len: 100, max_bytes: 32 * 1024, ttl: Duration::from_secs(7 * 24 * 3600) };

/// Appends "queued" to the order's status log, best effort: the order is queued either way.
async fn log_queued(store: &Store, owner: &str, order_id: &str) {
    let at = ids::unix_now().to_string();
    let fields = [("owner_id", owner), ("status", STATUS_QUEUED), ("reason", ""), ("at", at.as_str())];
    if let Err(e) = store.log_append(&events_key(order_id), &fields, EVENTS_BOUNDS).await {
        tracing::warn!(order = %order_id, error = %e, "queued an order but could not log its event");
    }
}

/// Binds the key to a new order id, or finds what it is bound to.
async fn bind(store: &Store, owner: &str, key: &str, fingerprint: String) -> Result<KeyBinding, QueueError> {
    let binding_key = binding_key(owner, key);
    let fresh = KeyBinding { order_id: ids::new_id(), fingerprint };
    // Twice: the binding may expire between our set_nx and our read.
    for _ in 0..2 {
        if store.set_nx_json(&binding_key, &fresh, Some(RECORD_TTL)).await? {
            return Ok(fresh);
        }
        if let Some(existing) = store.get_json::<KeyBinding>(&binding_key).await? {
            if existing.fingerprint != fresh.fingerprint {
                return Err(QueueError::KeyReused);
            }
            return Ok(existing);
        }
    }
    Err(QueueError::Unavailable("the Idempotency-Key binding keeps changing".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(article_id: &str, quantity: u32) -> QueuedLine {
        QueuedLine { article_id: article_id.into(), quantity }
    }

    #[test]
    fn the_fingerprint_ignores_item_order_but_not_quantities() {
        let (a, b) = (ids::new_id(), ids::new_id());
        let base = fingerprint(&[line(&a, 1), line(&b, 2)]);
        assert_eq!(base, fingerprint(&[line(&b, 2), line(&a, 1)]));
        assert_ne!(base, fingerprint(&[line(&a, 2), line(&b, 1)]));
    }

    #[tokio::test]
    async fn a_replayed_key_keeps_its_id_and_is_appended_once() {
        let store = Store::memory();
        let (owner, article) = (ids::new_id(), ids::new_id());
        let items = [line(&article, 3)];
        let first = enqueue(&store, &QueueLimits::default(), "rid-1", &owner, "k", &items).await.unwrap();
        assert!(first.appended);
        assert_eq!((first.order.status.as_str(), first.order.items.len()), ("queued", 1));
        let again = enqueue(&store, &QueueLimits::default(), "rid-2", &owner, "k", &items).await.unwrap();
        assert!(!again.appended);
        assert_eq!(again.order, first.order);
        assert_eq!(store.stream_len(STREAM).await.unwrap(), 1);

        assert!(matches!(
            enqueue(&store, &QueueLimits::default(), "rid-3", &owner, "k", &[line(&article, 4)]).await,
            Err(QueueError::KeyReused)
        ));
        let fp = fingerprint(&items);
        assert_eq!(bound_order_id(&store, &owner, "k", &fp).await, Some(first.order.id.clone()));
        assert_eq!(bound_order_id(&store, &owner, "k", "other").await, None);
        assert_eq!(queued(&store, &owner, &first.order.id).await, Some(first.order.clone()));
        assert_eq!(queued(&store, &ids::new_id(), &first.order.id).await, None, "never another owner's");
        assert_eq!(queued(&store, &owner, "../x").await, None);

        // Another key of the same owner is another order.
        let other = enqueue(&store, &QueueLimits::default(), "rid-4", &owner, "k2", &items).await.unwrap();
        assert_ne!(other.order.id, first.order.id);
        assert_eq!(store.stream_len(STREAM).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_queue_over_its_bounds_refuses_new_orders_but_still_answers_replays() {
        let store = Store::memory();
        let (owner, article) = (ids::new_id(), ids::new_id());
        let items = [line(&article, 1)];
        let two = QueueLimits { max_len: 2, ..QueueLimits::default() };
        let first = enqueue(&store, &two, "r1", &owner, "k1", &items).await.unwrap();
        enqueue(&store, &two, "r2", &owner, "k2", &items).await.unwrap();
        let full = enqueue(&store, &two, "r3", &owner, "k3", &items).await.unwrap_err();
        assert!(matches!(&full, QueueError::Unavailable(why) if why.contains("max_len 2")), "{full:?}");
        let replay = enqueue(&store, &two, "r4", &owner, "k1", &items).await.unwrap();
        assert_eq!((replay.order.id, replay.appended), (first.order.id, false), "a replay is no new entry");
        assert_eq!(store.stream_len(STREAM).await.unwrap(), 2, "nothing appended past the bound");

        // An entry waiting as long as `max_age` means nobody drains: new orders are refused.
        let stale = QueueLimits { max_age: Duration::from_millis(50), ..QueueLimits::default() };
        tokio::time::sleep(Duration::from_millis(60)).await;
        let old = enqueue(&store, &stale, "r5", &owner, "k5", &items).await.unwrap_err();
        assert!(matches!(&old, QueueError::Unavailable(why) if why.contains("max_age")), "{old:?}");
        assert_eq!(entry_age("1000-0", 3500), Some(Duration::from_millis(2500)));
        assert_eq!(entry_age("nope", 1), None);
    }

    #[test]
    fn the_queued_event_is_logged_with_the_orders_services_bounds() {
        assert_eq!(EVENTS_BOUNDS, orders_service::events::DEFAULT_BOUNDS);
        assert!(QueueLimits::default().max_age * 4 <= orders_service::Config::default().idempotency_ttl);
        assert_eq!(RECORD_TTL, orders_service::Config::default().idempotency_ttl);
    }

    #[tokio::test]
    async fn a_created_order_binds_its_key_so_a_replay_during_an_outage_names_it() {
        let store = Store::memory();
        let (owner, article, created) = (ids::new_id(), ids::new_id(), ids::new_id());
        let items = [line(&article, 1)];
        bind_created(&store, &owner, "k", &fingerprint(&items), &created).await;
        let replay = enqueue(&store, &QueueLimits::default(), "rid", &owner, "k", &items).await.unwrap();
        assert_eq!(replay.order.id, created);
    }

    #[tokio::test]
    async fn the_entries_are_what_the_orders_service_reads() {
        use orders_service::queue as consumer;
        let store = Store::memory();
        let (owner, article) = (ids::new_id(), ids::new_id());
        let queued = enqueue(&store, &QueueLimits::default(), "rid-9", &owner, "key-9", &[line(&article, 7)])
            .await
            .unwrap();
        assert_eq!(STREAM, consumer::STREAM);
        store.stream_create_group(consumer::STREAM, consumer::GROUP).await.unwrap();
        let entries = store.stream_read(consumer::STREAM, consumer::GROUP, "test", 10).await.unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].field(consumer::FIELD_REQUEST_ID), Some("rid-9"));
        let raw = entries[0].field(consumer::FIELD_ORDER).unwrap();
        let decoded: consumer::QueuedOrder = serde_json::from_str(raw).unwrap();
        assert_eq!(
            decoded,
            consumer::QueuedOrder {
                owner_id: owner,
                idempotency_key: "key-9".into(),
                order_id: queued.order.id,
                items: vec![consumer::QueuedItem { article_id: article, quantity: 7 }],
            }
        );
        let id = decoded.order_id;
        let logged = store.log_after(&orders_service::events::log_key(&id), None, 10).await.unwrap();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].field("owner_id"), Some(decoded.owner_id.as_str()));
        let event = orders_service::events::event(&id, logged[0].clone());
        assert_eq!((event.order_id.as_str(), event.status.as_str()), (id.as_str(), "queued"));
        assert!(event.at > 0);
    }

    #[tokio::test]
    async fn a_store_that_fails_queues_nothing_and_says_so() {
        let mut redis = mesh_tests::RedisServer::start().await.unwrap();
        let cfg = mesh_core::StoreConfig {
            redis_url: Some(redis.url()),
            key_prefix: mesh_tests::unique_prefix("queue"),
            command_timeout: Duration::from_millis(300),
            connect_timeout: Duration::from_millis(200),
        };
        let store = Store::connect(&cfg).await.unwrap();
        let (owner, article) = (ids::new_id(), ids::new_id());
        redis.kill();
        let started = std::time::Instant::now();
        let err = enqueue(&store, &QueueLimits::default(), "rid", &owner, "k", &[line(&article, 1)])
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
        assert!(started.elapsed() <= ENQUEUE_TIMEOUT + Duration::from_millis(500));
        assert_eq!(bound_order_id(&store, &owner, "k", "fp").await, None, "lookups fail open");
    }
}
