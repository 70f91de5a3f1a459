//! The one place services keep state.
//!
//! Two backends behind one API: [`RedisStore`] for every multi-process deployment (all replicas
//! of a service share it, so any replica can serve any request) and [`MemoryStore`], the embedded
//! default of `meshctl up` when no Redis is configured. The primitives are the few atomic
//! operations the services need, each one round trip on Redis; the same contract tests run
//! against both backends (`tests/store_contract.rs`).
//!
//! Keys are namespaced with the configured prefix so deployments (or tests) can share a server.
//!
//! Streams (`stream_*`) are durable work queues with consumer groups, as Redis Streams: an entry
//! is appended once, delivered to one consumer of a group, stays pending until that consumer
//! acknowledges it, and can be claimed by another consumer once it has been pending too long
//! (its consumer died). A stream here serves one group, so acknowledging an entry also deletes it:
//! the stream's length is the work not yet done.
//!
//! A stream can also be a capped log ([`Store::log_append`], [`Store::log_after`]): appended to,
//! trimmed to its last entries within a count and a byte bound ([`LogBounds`]), expiring when
//! nobody appends for a while, and read by anyone from any position, with no group; [`follow`]
//! reads one from a position on as it grows.

pub mod failopen;
mod follow;
mod memory;
mod redis;
mod stream;

use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

pub use self::failopen::FailOpen;
pub use self::follow::{FollowOptions, follow, is_entry_id};
pub use self::memory::MemoryStore;
pub use self::redis::RedisStore;
pub use self::stream::StreamEntry;

/// Where state lives.
///
/// - `redis_url` unset: a private in-process memory store (unit tests, a lone process).
/// - `redis_url = "memory://<name>"`: the in-process memory store called `<name>`, shared by every
///   component of this process that names it. `meshctl up` runs the whole mesh this way.
/// - `redis_url = "redis://…"`: Redis, shared by every process and replica.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `redis://host:port/db` or `memory://<name>`. Default: none (private memory backend).
    pub redis_url: Option<String>,
    /// Prepended to every key. Default: `mesh:`.
    pub key_prefix: String,
    /// Time allowed for one Redis command before it counts as a failure. Default: 2s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub command_timeout: Duration,
    /// Time allowed to (re)connect. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "crate::config::HumanDuration")]
    pub connect_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            key_prefix: "mesh:".into(),
            command_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or did not answer in time. Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be decoded. A bug or a foreign writer.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How much a capped log keeps ([`Store::log_append`]): the oldest entries are dropped until
/// both bounds hold, and the whole log expires `ttl` after its last append. The newest entry
/// always stays, so one entry larger than `max_bytes` is the whole log: callers bound their
/// entries (analytics bounds event properties) well below `max_bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    /// Entries kept at most.
    pub max_len: usize,
    /// Bytes kept at most, counted as the sum of the lengths of the field names and values of the
    /// kept entries: what the caller stored, not the backend's overhead (Redis adds a few bytes
    /// per entry and per node of 100 entries; see `redis/stream.rs`).
    pub max_bytes: usize,
    /// How long the log lives after its last append.
    pub ttl: Duration,
}

/// Outcome of [`Store::add_bounded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bounded {
    /// The delta was applied; this is the new value.
    Applied(i64),
    /// Applying the delta would have left `[min, max]`; nothing changed. This is the current value.
    Refused(i64),
}

/// A handle to the configured backend. Cheap to clone.
#[derive(Clone, Debug)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

/// Dispatches one call to whichever backend this store is.
macro_rules! dispatch {
    ($self:ident, $method:ident ( $($arg:expr),* )) => {
        match $self {
            Store::Memory(s) => s.$method($($arg),*).await,
            Store::Redis(s) => s.$method($($arg),*).await,
        }
    };
}

impl Store {
    /// Connects to Redis when configured, else creates an empty memory store.
    pub async fn connect(cfg: &StoreConfig) -> StoreResult<Self> {
        match cfg.redis_url.as_deref() {
            Some(url) if url.starts_with("memory://") => {
                Ok(Self::Memory(MemoryStore::named(&url["memory://".len()..], &cfg.key_prefix)))
            }
            Some(url) if !url.is_empty() => Ok(Self::Redis(RedisStore::connect(url, cfg).await?)),
            _ => Ok(Self::Memory(MemoryStore::new(&cfg.key_prefix))),
        }
    }

    /// A fresh memory store, for the embedded default and unit tests.
    pub fn memory() -> Self {
        Self::Memory(MemoryStore::new(&StoreConfig::default().key_prefix))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    /// Round trip to the backend; readiness probes use it.
    pub async fn ping(&self) -> StoreResult<()> {
        dispatch!(self, ping())
    }

    /// The fail-open view of this store for `tier` (a name in logs and metrics), with the
    /// default timeout and rest; every view of one tier of one store shares its rest.
    pub fn fail_open(&self, tier: &'static str) -> FailOpen {
        FailOpen::new(self.clone(), tier)
    }

    fn rests(&self) -> &failopen::Rests {
        match self {
            Self::Memory(s) => s.rests(),
            Self::Redis(s) => s.rests(),
        }
    }

    /// What a readiness probe says of the store: `"memory"`, `"redis"` when it answers a PING
    /// within `timeout`, else why not. Components start and serve while Redis is down (the
    /// store tier fails open), so this is a detail of readiness, not a condition of it.
    pub async fn health(&self, timeout: Duration) -> Result<&'static str, String> {
        match tokio::time::timeout(timeout, self.ping()).await {
            Ok(Ok(())) => Ok(self.backend()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    pub async fn get(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self, get(key))
    }

    /// Sets `key`, replacing any value; with a `ttl` the key expires.
    pub async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<()> {
        dispatch!(self, set(key, value, ttl))
    }

    /// Sets `key` only if it does not exist. Returns whether it was set.
    pub async fn set_nx(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        dispatch!(self, set_nx(key, value, ttl))
    }

    /// Sets `key` only if it exists, returning the value it replaced (`None`: nothing changed).
    /// The swap is atomic: of two concurrent callers, exactly one sees the original value.
    /// Like [`Store::set`], it replaces the expiry too: without a `ttl` the key becomes permanent.
    pub async fn replace(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<Option<String>> {
        dispatch!(self, replace(key, value, ttl))
    }

    /// Deletes `key`. Returns whether it existed.
    pub async fn delete(&self, key: &str) -> StoreResult<bool> {
        dispatch!(self, delete(key))
    }

    /// Deletes `key` only if it holds `expected`: compare-and-delete, one atomic step. Returns
    /// whether it deleted. Frees a claim only while it is still the caller's own: a plain
    /// [`Store::delete`] after a failure could remove a claim that expired meanwhile and was taken
    /// by someone else. Only string values compare; any other kind of key is never equal.
    pub async fn delete_if_eq(&self, key: &str, expected: &str) -> StoreResult<bool> {
        dispatch!(self, delete_if_eq(key, expected))
    }

    /// Sets `key` to expire `ttl` from now only if it holds `expected`: compare-and-renew, one
    /// atomic step. Returns whether it renewed. Keeps a lease alive only while it is still the
    /// caller's: a late renewal of one that expired and was taken by someone else fails.
    pub async fn renew_if_eq(&self, key: &str, expected: &str, ttl: Duration) -> StoreResult<bool> {
        dispatch!(self, renew_if_eq(key, expected, ttl))
    }

    /// Atomically adds `delta` to the integer at `key` (absent counts as 0) if the result stays
    /// within `[min, max]`. A `ttl` is set when the key is created and never extended, which makes
    /// fixed windows: the window starts at the first write.
    pub async fn add_bounded(
        &self,
        key: &str,
        delta: i64,
        min: i64,
        max: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<Bounded> {
        dispatch!(self, add_bounded(key, delta, min, max, ttl))
    }

    /// Remaining lifetime of `key`, whatever kind of key it is: `None` if it does not exist or
    /// never expires.
    pub async fn ttl(&self, key: &str) -> StoreResult<Option<Duration>> {
        dispatch!(self, ttl(key))
    }

    /// Adds `member` to the ordered index `key` (members sort byte-wise).
    pub async fn index_add(&self, key: &str, member: &str) -> StoreResult<()> {
        dispatch!(self, index_add(key, member))
    }

    pub async fn index_remove(&self, key: &str, member: &str) -> StoreResult<bool> {
        dispatch!(self, index_remove(key, member))
    }

    /// Up to `limit` members strictly after `after` (or from the start), ascending or descending.
    pub async fn index_page(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
        descending: bool,
    ) -> StoreResult<Vec<String>> {
        dispatch!(self, index_page(key, after, limit, descending))
    }

    /// Adds `delta` to `field` of the hash `key`; a `ttl` is (re)set on every call.
    pub async fn hash_incr(
        &self,
        key: &str,
        field: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<i64> {
        dispatch!(self, hash_incr(key, field, delta, ttl))
    }

    /// Every field of each hash in `keys`, in one round trip; a missing hash is empty.
    pub async fn hash_get_all_many(&self, keys: &[String]) -> StoreResult<Vec<Vec<(String, i64)>>> {
        dispatch!(self, hash_get_all_many(keys))
    }

    /// Several keys in one round trip, in order.
    pub async fn get_many(&self, keys: &[String]) -> StoreResult<Vec<Option<String>>> {
        dispatch!(self, get_many(keys))
    }

    /// Appends an entry of field/value pairs to the stream `key` (created if absent) and returns
    /// its id. Nothing is ever trimmed to make room: an entry leaves the stream only when it is
    /// acknowledged ([`Store::stream_ack`]), so unprocessed work is never dropped.
    pub async fn stream_add(&self, key: &str, fields: &[(&str, &str)]) -> StoreResult<String> {
        dispatch!(self, stream_add(key, fields))
    }

    /// Creates the consumer group `group` on the stream `key` (and the stream, if absent),
    /// starting from the stream's first entry, so entries appended before any consumer existed
    /// are delivered too. Idempotent: a group that exists already is left as it is.
    pub async fn stream_create_group(&self, key: &str, group: &str) -> StoreResult<()> {
        dispatch!(self, stream_create_group(key, group))
    }

    /// Up to `count` entries never delivered to `group`, now delivered to `consumer`: each entry
    /// goes to exactly one consumer of the group and stays pending (for that consumer) until
    /// acknowledged. Never blocks: a multiplexed Redis connection must not be held by a blocking
    /// read, so callers poll. Fails if the group does not exist (create it first).
    pub async fn stream_read(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        dispatch!(self, stream_read(key, group, consumer, count))
    }

    /// Up to `count` entries delivered to `consumer` and not yet acknowledged, oldest first: its
    /// own work to retry. Reading them again restarts their idle time.
    pub async fn stream_read_pending(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        dispatch!(self, stream_read_pending(key, group, consumer, count))
    }

    /// Moves up to `count` entries that have been pending in `group` for at least `min_idle`
    /// (whichever consumer holds them) to `consumer`, restarting their idle time, and returns
    /// them, oldest first. How a live consumer takes over the work of a dead one (XAUTOCLAIM).
    pub async fn stream_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        dispatch!(self, stream_claim(key, group, consumer, min_idle, count))
    }

    /// Acknowledges `ids` in `group` and deletes them from the stream, in one atomic step.
    /// Returns how many were pending. An acknowledged entry is never delivered or claimed again.
    pub async fn stream_ack(&self, key: &str, group: &str, ids: &[String]) -> StoreResult<usize> {
        dispatch!(self, stream_ack(key, group, ids))
    }

    /// Entries in the stream `key`: appended and not yet acknowledged (0 if it does not exist).
    pub async fn stream_len(&self, key: &str) -> StoreResult<u64> {
        dispatch!(self, stream_len(key))
    }

    /// Appends an entry to the capped log `key` (a stream; created if absent), drops its oldest
    /// entries until it holds at most `bounds.max_len` entries and `bounds.max_bytes` bytes
    /// (exactly, on both backends), sets it to expire `bounds.ttl` from now, and returns the
    /// entry's id. One atomic step. Not for work queues: dropped entries are gone, read or not.
    pub async fn log_append(
        &self,
        key: &str,
        fields: &[(&str, &str)],
        bounds: LogBounds,
    ) -> StoreResult<String> {
        dispatch!(self, log_append(key, fields, bounds))
    }

    /// Up to `count` entries of the log (or stream) `key` strictly after the id `after` (from the
    /// first entry when `None`), oldest first; nothing if it does not exist. Reads no group state
    /// and never blocks, so any number of readers poll it. An `after` that is not an entry id
    /// (`<ms>-<seq>`) fails as corrupt input.
    pub async fn log_after(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        dispatch!(self, log_after(key, after, count))
    }

    /// The id of the newest entry of the log (or stream) `key`: where a reader that wants only
    /// what comes next starts. `None` when it is empty or absent.
    pub async fn log_last_id(&self, key: &str) -> StoreResult<Option<String>> {
        dispatch!(self, log_last_id(key))
    }

    /// [`Store::get`] decoded from JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> StoreResult<Option<T>> {
        self.get(key).await?.map(|raw| decode(key, &raw)).transpose()
    }

    /// [`Store::set`] encoded as JSON.
    pub async fn set_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        self.set(key, &encode(value)?, ttl).await
    }

    /// [`Store::set_nx`] encoded as JSON.
    pub async fn set_nx_json<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> StoreResult<bool> {
        self.set_nx(key, &encode(value)?, ttl).await
    }
}

fn encode<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Decodes a stored JSON value, naming the key when it does not parse.
pub fn decode<T: DeserializeOwned>(key: &str, raw: &str) -> StoreResult<T> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))
}
