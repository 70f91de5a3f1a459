//! Streams in memory, with the semantics of Redis Streams and one consumer group per use:
//! an entry is delivered to one consumer, pending until acknowledged, claimable once idle.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::MemoryStore;
use crate::store::{LogBounds, StoreError, StoreResult, StreamEntry};

/// `<unix ms>-<sequence>`, compared as numbers like Redis does.
type EntryId = (u64, u64);

#[derive(Debug, Default)]
pub(super) struct Stream {
    last_id: EntryId,
    entries: BTreeMap<EntryId, Vec<(String, String)>>,
    /// Sum of [`size`] over `entries`: what a log's byte bound is checked against.
    bytes: usize,
    groups: HashMap<String, Group>,
    /// Set by a log append (work queues never expire). Checked on access, as for strings.
    pub(super) expires_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Group {
    /// Entries after this one have never been delivered to the group.
    last_delivered: EntryId,
    /// Delivered and not yet acknowledged (Redis's PEL).
    pending: BTreeMap<EntryId, Delivery>,
}

#[derive(Debug)]
struct Delivery {
    consumer: String,
    at: Instant,
}

fn format_id((ms, seq): EntryId) -> String {
    format!("{ms}-{seq}")
}

fn parse_id(id: &str) -> Option<EntryId> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What an entry counts towards a log's byte bound: its field names and values, as on Redis.
fn size(fields: &[(String, String)]) -> usize {
    fields.iter().map(|(f, v)| f.len() + v.len()).sum()
}

fn no_group(group: &str) -> StoreError {
    StoreError::Unavailable(format!("NOGROUP no consumer group {group}"))
}

// === impl Stream ===

impl Stream {
    fn add(&mut self, fields: &[(&str, &str)]) -> EntryId {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let id = if now > self.last_id.0 { (now, 0) } else { (self.last_id.0, self.last_id.1 + 1) };
        self.last_id = id;
        let fields: Vec<(String, String)> =
            fields.iter().map(|(f, v)| ((*f).to_owned(), (*v).to_owned())).collect();
        self.bytes += size(&fields);
        self.entries.insert(id, fields);
        id
    }

    /// Drops the oldest entries until both bounds hold, always keeping the newest.
    fn trim(&mut self, bounds: LogBounds) {
        while self.entries.len() > 1 && (self.entries.len() > bounds.max_len || self.bytes > bounds.max_bytes)
        {
            if let Some((_, fields)) = self.entries.pop_first() {
                self.bytes -= size(&fields);
            }
        }
    }

    fn remove(&mut self, id: &EntryId) {
        if let Some(fields) = self.entries.remove(id) {
            self.bytes -= size(&fields);
        }
    }

    pub(super) fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|t| t > now)
    }

    fn after(&self, after: Option<EntryId>, count: usize) -> Vec<StreamEntry> {
        let start = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.entries
            .range((start, std::ops::Bound::Unbounded))
            .take(count.max(1))
            .map(|(id, fields)| StreamEntry { id: format_id(*id), fields: fields.clone() })
            .collect()
    }

    fn entry(&self, id: EntryId) -> Option<StreamEntry> {
        let fields = self.entries.get(&id)?.clone();
        Some(StreamEntry { id: format_id(id), fields })
    }

    fn read_new(&mut self, group: &str, consumer: &str, count: usize) -> StoreResult<Vec<StreamEntry>> {
        let g = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let ids: Vec<EntryId> = self
            .entries
            .range((std::ops::Bound::Excluded(g.last_delivered), std::ops::Bound::Unbounded))
            .take(count)
            .map(|(id, _)| *id)
            .collect();
        let now = Instant::now();
        for id in &ids {
            g.pending.insert(*id, Delivery { consumer: consumer.to_owned(), at: now });
            g.last_delivered = *id;
        }
        Ok(ids.into_iter().filter_map(|id| self.entry(id)).collect())
    }

    fn read_pending(&mut self, group: &str, consumer: &str, count: usize) -> StoreResult<Vec<StreamEntry>> {
        let g = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let now = Instant::now();
        let mut ids = Vec::new();
        for (id, delivery) in g.pending.iter_mut().filter(|(_, d)| d.consumer == consumer).take(count) {
            delivery.at = now;
            ids.push(*id);
        }
        Ok(ids.into_iter().filter_map(|id| self.entry(id)).collect())
    }

    fn claim(
        &mut self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let g = self.groups.get_mut(group).ok_or_else(|| no_group(group))?;
        let now = Instant::now();
        // Like XAUTOCLAIM: a pending entry deleted from the stream meanwhile leaves the PEL.
        g.pending.retain(|id, _| self.entries.contains_key(id));
        let mut ids = Vec::new();
        for (id, delivery) in g.pending.iter_mut() {
            if ids.len() == count {
                break;
            }
            if now.saturating_duration_since(delivery.at) >= min_idle {
                *delivery = Delivery { consumer: consumer.to_owned(), at: now };
                ids.push(*id);
            }
        }
        Ok(ids.into_iter().filter_map(|id| self.entry(id)).collect())
    }

    fn ack(&mut self, group: &str, ids: &[String]) -> usize {
        let ids: Vec<EntryId> = ids.iter().filter_map(|id| parse_id(id)).collect();
        let acked = match self.groups.get_mut(group) {
            Some(g) => ids.iter().filter(|id| g.pending.remove(id).is_some()).count(),
            None => 0,
        };
        for id in &ids {
            self.remove(id);
        }
        acked
    }
}

// === impl MemoryStore ===

impl MemoryStore {
    pub(in crate::store) async fn stream_add(
        &self,
        key: &str,
        fields: &[(&str, &str)],
    ) -> StoreResult<String> {
        let id = self.lock().live_stream_or_default(self.key(key)).add(fields);
        Ok(format_id(id))
    }

    pub(in crate::store) async fn stream_create_group(&self, key: &str, group: &str) -> StoreResult<()> {
        self.lock().live_stream_or_default(self.key(key)).groups.entry(group.to_owned()).or_default();
        Ok(())
    }

    pub(in crate::store) async fn stream_read(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        match self.lock().live_stream(&self.key(key)) {
            Some(stream) => stream.read_new(group, consumer, count),
            None => Err(no_group(group)),
        }
    }

    pub(in crate::store) async fn stream_read_pending(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        match self.lock().live_stream(&self.key(key)) {
            Some(stream) => stream.read_pending(group, consumer, count),
            None => Err(no_group(group)),
        }
    }

    pub(in crate::store) async fn stream_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        match self.lock().live_stream(&self.key(key)) {
            Some(stream) => stream.claim(group, consumer, min_idle, count),
            None => Err(no_group(group)),
        }
    }

    pub(in crate::store) async fn stream_ack(
        &self,
        key: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<usize> {
        Ok(self.lock().live_stream(&self.key(key)).map_or(0, |stream| stream.ack(group, ids)))
    }

    pub(in crate::store) async fn log_append(
        &self,
        key: &str,
        fields: &[(&str, &str)],
        bounds: LogBounds,
    ) -> StoreResult<String> {
        let mut maps = self.lock();
        let stream = maps.live_stream_or_default(self.key(key));
        let id = stream.add(fields);
        stream.trim(bounds);
        stream.expires_at = Some(Instant::now() + bounds.ttl);
        Ok(format_id(id))
    }

    pub(in crate::store) async fn log_after(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let after = match after {
            Some(id) => Some(
                parse_id(id).ok_or_else(|| StoreError::Corrupt(format!("not a stream entry id: {id:?}")))?,
            ),
            None => None,
        };
        Ok(self.lock().live_stream(&self.key(key)).map_or_else(Vec::new, |s| s.after(after, count)))
    }

    pub(in crate::store) async fn log_last_id(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(self
            .lock()
            .live_stream(&self.key(key))
            .and_then(|s| s.entries.last_key_value().map(|(id, _)| format_id(*id))))
    }

    pub(in crate::store) async fn stream_len(&self, key: &str) -> StoreResult<u64> {
        Ok(self.lock().live_stream(&self.key(key)).map_or(0, |stream| stream.entries.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_one_millisecond_and_round_trip() {
        let mut stream = Stream::default();
        let ids: Vec<EntryId> = (0..100).map(|_| stream.add(&[("f", "v")])).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(parse_id(&format_id(ids[7])), Some(ids[7]));
        assert_eq!(parse_id("nope"), None);
    }
}
