//! The in-process backend: the embedded default for `meshctl up` without Redis.
//!
//! One mutex over all maps keeps every operation trivially atomic, which is the contract the Redis
//! backend gets from single-threaded command execution. Expiry (of strings, hashes and logs) is
//! checked on access, and every `SWEEP_EVERY` operations the whole store is swept of expired
//! keys: keys nobody asks for again (a sprayed email's login lockout, an idle user's log) would
//! otherwise stay for the life of the process, a growth any client could drive.
//! Streams live in `memory/stream.rs`.

mod stream;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Bounded, StoreResult};

#[derive(Clone, Debug)]
pub struct MemoryStore {
    prefix: Arc<str>,
    inner: Arc<Mutex<Maps>>,
    rests: super::failopen::Rests,
}

#[derive(Debug, Default)]
struct Maps {
    strings: HashMap<String, Entry<String>>,
    hashes: HashMap<String, Entry<HashMap<String, i64>>>,
    indexes: HashMap<String, BTreeSet<String>>,
    streams: HashMap<String, stream::Stream>,
    /// Operations since the store was made, for the sweep.
    ops: u64,
}

/// Operations between two sweeps of expired keys: often enough that expired keys never
/// outnumber live ones by much, rarely enough that the sweep's cost (one pass) is amortised.
const SWEEP_EVERY: u64 = 4096;

#[derive(Debug)]
struct Entry<T> {
    value: T,
    expires_at: Option<Instant>,
}

impl<T> Entry<T> {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }
}

fn deadline(ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|t| Instant::now() + t)
}

// === impl Maps ===

impl Maps {
    /// Drops every expired key.
    fn sweep(&mut self, now: Instant) {
        self.strings.retain(|_, e| e.live(now));
        self.hashes.retain(|_, e| e.live(now));
        self.streams.retain(|_, s| s.live(now));
    }

    fn live_string(&mut self, key: &str) -> Option<&mut Entry<String>> {
        let now = Instant::now();
        if self.strings.get(key).is_some_and(|e| !e.live(now)) {
            self.strings.remove(key);
        }
        self.strings.get_mut(key)
    }

    fn live_hash(&mut self, key: &str) -> Option<&mut Entry<HashMap<String, i64>>> {
        let now = Instant::now();
        if self.hashes.get(key).is_some_and(|e| !e.live(now)) {
            self.hashes.remove(key);
        }
        self.hashes.get_mut(key)
    }

    fn live_stream(&mut self, key: &str) -> Option<&mut stream::Stream> {
        let now = Instant::now();
        if self.streams.get(key).is_some_and(|s| !s.live(now)) {
            self.streams.remove(key);
        }
        self.streams.get_mut(key)
    }

    /// The stream `key`, created empty (and without expiry) if absent or expired.
    fn live_stream_or_default(&mut self, key: String) -> &mut stream::Stream {
        self.live_stream(&key);
        self.streams.entry(key).or_default()
    }
}

/// Named stores of this process, for components that must share one (`memory://<name>`).
static NAMED: std::sync::OnceLock<Mutex<HashMap<String, Arc<Mutex<Maps>>>>> = std::sync::OnceLock::new();

// === impl MemoryStore ===

impl MemoryStore {
    /// A private, empty store.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.into(), inner: Arc::default(), rests: Default::default() }
    }

    /// The process-wide store called `name`, created empty on first use.
    pub fn named(name: &str, prefix: &str) -> Self {
        let mut named = NAMED.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
        let inner = named.entry(name.to_owned()).or_default().clone();
        Self { prefix: prefix.into(), inner, rests: Default::default() }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(super) fn rests(&self) -> &super::failopen::Rests {
        &self.rests
    }

    fn lock(&self) -> MutexGuard<'_, Maps> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the process, so a poisoned lock is still used.
        let mut maps = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        maps.ops += 1;
        if maps.ops.is_multiple_of(SWEEP_EVERY) {
            maps.sweep(Instant::now());
        }
        maps
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    pub(super) async fn get(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self.lock().live_string(&self.key(key)).map(|e| e.value.clone()))
    }

    pub(super) async fn get_many(&self, keys: &[String]) -> StoreResult<Vec<Option<String>>> {
        let mut maps = self.lock();
        Ok(keys.iter().map(|k| maps.live_string(&self.key(k)).map(|e| e.value.clone())).collect())
    }

    pub(super) async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<()> {
        let entry = Entry { value: value.to_owned(), expires_at: deadline(ttl) };
        self.lock().strings.insert(self.key(key), entry);
        Ok(())
    }

    pub(super) async fn set_nx(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let key = self.key(key);
        let mut maps = self.lock();
        if maps.live_string(&key).is_some() {
            return Ok(false);
        }
        maps.strings.insert(key, Entry { value: value.to_owned(), expires_at: deadline(ttl) });
        Ok(true)
    }

    pub(super) async fn replace(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<Option<String>> {
        let key = self.key(key);
        let mut maps = self.lock();
        Ok(maps.live_string(&key).map(|entry| {
            entry.expires_at = deadline(ttl);
            std::mem::replace(&mut entry.value, value.to_owned())
        }))
    }

    pub(super) async fn delete(&self, key: &str) -> StoreResult<bool> {
        let key = self.key(key);
        let mut maps = self.lock();
        let existed = maps.live_string(&key).is_some()
            || maps.live_hash(&key).is_some()
            || maps.live_stream(&key).is_some();
        maps.strings.remove(&key);
        maps.hashes.remove(&key);
        let existed = existed | maps.indexes.remove(&key).is_some();
        Ok(existed | maps.streams.remove(&key).is_some())
    }

    pub(super) async fn delete_if_eq(&self, key: &str, expected: &str) -> StoreResult<bool> {
        let key = self.key(key);
        let mut maps = self.lock();
        if maps.live_string(&key).is_some_and(|e| e.value == expected) {
            maps.strings.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }

    pub(super) async fn renew_if_eq(&self, key: &str, expected: &str, ttl: Duration) -> StoreResult<bool> {
        let key = self.key(key);
        let mut maps = self.lock();
        match maps.live_string(&key) {
            Some(entry) if entry.value == expected => {
                entry.expires_at = deadline(Some(ttl));
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    pub(super) async fn add_bounded(
        &self,
        key: &str,
        delta: i64,
        min: i64,
        max: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<Bounded> {
        let key = self.key(key);
        let mut maps = self.lock();
        let current = match maps.live_string(&key) {
            Some(e) => e.value.parse::<i64>().map_err(|e| super::StoreError::Corrupt(e.to_string()))?,
            None => 0,
        };
        let next = current.saturating_add(delta);
        if next < min || next > max {
            return Ok(Bounded::Refused(current));
        }
        match maps.live_string(&key) {
            Some(e) => e.value = next.to_string(),
            None => {
                maps.strings.insert(key, Entry { value: next.to_string(), expires_at: deadline(ttl) });
            }
        }
        Ok(Bounded::Applied(next))
    }

    pub(super) async fn ttl(&self, key: &str) -> StoreResult<Option<Duration>> {
        let now = Instant::now();
        let key = self.key(key);
        let mut maps = self.lock();
        // A key has one kind; whichever holds it answers (indexes never expire).
        let string = maps.live_string(&key).map(|e| e.expires_at);
        let hash = maps.live_hash(&key).map(|e| e.expires_at);
        let stream = maps.live_stream(&key).map(|s| s.expires_at);
        Ok(string.or(hash).or(stream).flatten().map(|t| t.saturating_duration_since(now)))
    }

    pub(super) async fn index_add(&self, key: &str, member: &str) -> StoreResult<()> {
        self.lock().indexes.entry(self.key(key)).or_default().insert(member.to_owned());
        Ok(())
    }

    pub(super) async fn index_remove(&self, key: &str, member: &str) -> StoreResult<bool> {
        Ok(self.lock().indexes.get_mut(&self.key(key)).is_some_and(|set| set.remove(member)))
    }

    pub(super) async fn index_page(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
        descending: bool,
    ) -> StoreResult<Vec<String>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let maps = self.lock();
        let Some(set) = maps.indexes.get(&self.key(key)) else {
            return Ok(Vec::new());
        };
        let page = match (after, descending) {
            (None, false) => set.iter().take(limit).cloned().collect(),
            (None, true) => set.iter().rev().take(limit).cloned().collect(),
            (Some(a), false) => set.range::<str, _>((Excluded(a), Unbounded)).take(limit).cloned().collect(),
            (Some(a), true) => {
                set.range::<str, _>((Unbounded, Excluded(a))).rev().take(limit).cloned().collect()
            }
        };
        Ok(page)
    }

    pub(super) async fn hash_incr(
        &self,
        key: &str,
        field: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<i64> {
        let key = self.key(key);
        let mut maps = self.lock();
        if maps.live_hash(&key).is_none() {
            maps.hashes.insert(key.clone(), Entry { value: HashMap::new(), expires_at: None });
        }
        let entry = maps.live_hash(&key).expect("inserted above");
        if ttl.is_some() {
            entry.expires_at = deadline(ttl);
        }
        let count = entry.value.entry(field.to_owned()).or_insert(0);
        *count += delta;
        Ok(*count)
    }

    pub(super) async fn hash_get_all_many(&self, keys: &[String]) -> StoreResult<Vec<Vec<(String, i64)>>> {
        let mut maps = self.lock();
        Ok(keys
            .iter()
            .map(|k| {
                maps.live_hash(&self.key(k))
                    .map(|e| e.value.iter().map(|(f, v)| (f.clone(), *v)).collect())
                    .unwrap_or_default()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn expired_keys_nobody_asks_for_again_are_swept() {
        let store = MemoryStore::new("t:");
        for i in 0..1000 {
            store.set(&format!("gone:{i}"), "x", Some(Duration::from_millis(1))).await.unwrap();
        }
        store.set("kept", "x", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        for _ in 0..SWEEP_EVERY {
            store.get("kept").await.unwrap();
        }
        let maps = store.lock();
        assert_eq!(maps.strings.len(), 1, "only the live key is left");
    }
}
