//! Streams on Redis (XADD, XGROUP, XREADGROUP, XAUTOCLAIM, XACK + XDEL). Needs Redis 6.2 or
//! later, for XAUTOCLAIM and exclusive XRANGE starts.
//!
//! # Capped logs, bounded in bytes exactly
//! A log's byte bound is kept without a second key and without reading the whole log: every
//! entry carries one more field, [`LOG_MARK`], holding the bytes appended to the log up to and
//! including that entry (its end offset, as in a file). The bytes the log holds are then the
//! newest entry's offset minus where the oldest one starts (its offset minus its own size), so
//! one append reads the newest entry, appends, and reads only the oldest few entries it drops,
//! all in one script ([`LOG_APPEND`]). A second key holding a running total would be simpler to
//! read, but could be evicted or expire apart from the log and then undercount; the offsets
//! live and die with the entries. Readers never see the mark ([`RedisStore::log_after`]
//! strips it). What Redis itself adds (the mark, ~10 bytes of entry header, node headers) is
//! overhead on top of `max_bytes`, a few percent for entries of a few hundred bytes; the
//! bound is on what callers store, the same on both backends.

use std::time::Duration;

use redis::Value;

use super::{RedisStore, millis, unavailable};
use crate::store::{LogBounds, StoreError, StoreResult, StreamEntry};

/// The field every log entry carries on Redis: the log's end offset after that entry, in bytes.
/// Reserved: a caller's field of this name would be stripped on read.
pub(in crate::store) const LOG_MARK: &str = "__log_end";

/// One atomic append to a capped log. KEYS[1]: the log. ARGV: the mark's name, `max_len`,
/// `max_bytes`, the TTL in ms, then the entry's fields and values. The oldest entries go while
/// the count is over `max_len` or an entry starts before `newest end - max_bytes`; the dropped
/// ones are a prefix (offsets only grow), so the scan stops at the first entry kept. The newest
/// always stays. An entry without a mark (written before marks existed) counts as starting at
/// its size before 0, so it goes once `max_bytes` of marked entries are appended after it.
pub(in crate::store) const LOG_APPEND: &str = r#"
local key, mark = KEYS[1], ARGV[1]
local max_len, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local function mark_of(flat)
  for i = 1, #flat, 2 do
    if flat[i] == mark then return tonumber(flat[i + 1]) end
  end
  return nil
end
local function size(flat)
  local n = 0
  for i = 1, #flat, 2 do
    if flat[i] ~= mark then n = n + #flat[i] + #flat[i + 1] end
  end
  return n
end
local entry = {}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
local offset = 0
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
if #newest > 0 then offset = mark_of(newest[1][2]) or 0 end
local fin = offset + size(entry)
entry[#entry + 1] = mark
entry[#entry + 1] = string.format('%d', fin)
local id = redis.call('XADD', key, '*', unpack(entry))
local len = redis.call('XLEN', key)
local floor = fin - max_bytes
local drop, cursor, done = 0, '-', false
while not done and drop < len - 1 do
  local batch = redis.call('XRANGE', key, cursor, '+', 'COUNT', 8)
  if #batch == 0 then break end
  for _, e in ipairs(batch) do
    local start = (mark_of(e[2]) or 0) - size(e[2])
    if drop < len - 1 and (len - drop > max_len or start < floor) then
      drop = drop + 1
      cursor = '(' .. e[1]
    else
      done = true
      break
    end
  end
end
if drop > 0 then redis.call('XTRIM', key, 'MAXLEN', '=', len - drop) end
redis.call('PEXPIRE', key, ARGV[4])
return id
"#;

/// XAUTOCLAIM scans at most ten times COUNT pending entries per call; this bounds how many calls
/// one [`RedisStore::stream_claim`] makes over a long pending list of busy entries.
const CLAIM_SCANS: usize = 16;

fn corrupt(what: &str, value: &Value) -> StoreError {
    StoreError::Corrupt(format!("unexpected {what} reply: {value:?}"))
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// An entry id as a client gave it: `<ms>-<seq>`, digits only, so it cannot smuggle a range
/// bound of its own into XRANGE.
fn valid_id(id: &str) -> StoreResult<&str> {
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match id.split_once('-') {
        Some((ms, seq)) if digits(ms) && digits(seq) => Ok(id),
        _ => Err(StoreError::Corrupt(format!("not a stream entry id: {id:?}"))),
    }
}

/// `[[id, [field, value, …]], …]`. An entry deleted while pending comes back with no fields
/// (nil) from a history read; it has nothing to process and is left out.
fn entries(value: &Value) -> StoreResult<Vec<StreamEntry>> {
    let Value::Array(items) = value else { return Err(corrupt("stream entries", value)) };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(pair) = item else { return Err(corrupt("stream entry", item)) };
        let (Some(id), Some(fields)) = (pair.first().and_then(text), pair.get(1)) else {
            return Err(corrupt("stream entry", item));
        };
        let Value::Array(flat) = fields else { continue };
        let fields = flat
            .chunks(2)
            .map(|kv| match kv {
                [k, v] => text(k).zip(text(v)).ok_or_else(|| corrupt("stream field", item)),
                _ => Err(corrupt("stream fields", item)),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        out.push(StreamEntry { id, fields });
    }
    Ok(out)
}

/// XREADGROUP: nil when there is nothing, else `[[key, entries]]` (RESP2) or `{key: entries}`.
fn read_reply(value: &Value) -> StoreResult<Vec<StreamEntry>> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(stream)) if stream.len() == 2 => entries(&stream[1]),
            None => Ok(Vec::new()),
            _ => Err(corrupt("XREADGROUP", value)),
        },
        Value::Map(streams) => streams.first().map_or(Ok(Vec::new()), |(_, e)| entries(e)),
        _ => Err(corrupt("XREADGROUP", value)),
    }
}

// === impl RedisStore ===

impl RedisStore {
    pub(in crate::store) async fn stream_add(
        &self,
        key: &str,
        fields: &[(&str, &str)],
    ) -> StoreResult<String> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.key(key)).arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.query(&cmd).await
    }

    pub(in crate::store) async fn stream_create_group(&self, key: &str, group: &str) -> StoreResult<()> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(self.key(key)).arg(group).arg("0").arg("MKSTREAM");
        let mut conn = self.conn().await?;
        match cmd.query_async::<Value>(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn read_group(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
        from: &str,
    ) -> StoreResult<Vec<StreamEntry>> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(group).arg(consumer).arg("COUNT").arg(count.max(1));
        cmd.arg("STREAMS").arg(self.key(key)).arg(from);
        read_reply(&self.query::<Value>(&cmd).await?)
    }

    pub(in crate::store) async fn stream_read(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        // `>`: entries never delivered to this group.
        self.read_group(key, group, consumer, count, ">").await
    }

    pub(in crate::store) async fn stream_read_pending(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        // An id instead of `>`: this consumer's pending entries after it.
        self.read_group(key, group, consumer, count, "0").await
    }

    pub(in crate::store) async fn stream_claim(
        &self,
        key: &str,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let mut claimed = Vec::new();
        let mut cursor = "0-0".to_owned();
        for _ in 0..CLAIM_SCANS {
            let mut cmd = redis::cmd("XAUTOCLAIM");
            cmd.arg(self.key(key)).arg(group).arg(consumer).arg(min_idle.as_millis() as u64);
            cmd.arg(&cursor).arg("COUNT").arg(count.saturating_sub(claimed.len()).max(1));
            let reply: Value = self.query(&cmd).await?;
            let Value::Array(parts) = &reply else { return Err(corrupt("XAUTOCLAIM", &reply)) };
            let (Some(next), Some(found)) = (parts.first().and_then(text), parts.get(1)) else {
                return Err(corrupt("XAUTOCLAIM", &reply));
            };
            claimed.extend(entries(found)?);
            // `0-0`: the whole pending list was scanned.
            if next == "0-0" || claimed.len() >= count {
                break;
            }
            cursor = next;
        }
        Ok(claimed)
    }

    pub(in crate::store) async fn stream_ack(
        &self,
        key: &str,
        group: &str,
        ids: &[String],
    ) -> StoreResult<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("XACK").arg(&key).arg(group).arg(ids);
        pipe.cmd("XDEL").arg(&key).arg(ids).ignore();
        let mut conn = self.conn().await?;
        let (acked,): (usize,) = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(acked)
    }

    pub(in crate::store) async fn log_append(
        &self,
        key: &str,
        fields: &[(&str, &str)],
        bounds: LogBounds,
    ) -> StoreResult<String> {
        debug_assert!(fields.iter().all(|(f, _)| *f != LOG_MARK), "{LOG_MARK} is reserved");
        let mut invocation = self.log_append.key(self.key(key));
        invocation.arg(LOG_MARK).arg(bounds.max_len).arg(bounds.max_bytes).arg(millis(bounds.ttl));
        for (field, value) in fields {
            invocation.arg(*field).arg(*value);
        }
        let mut conn = self.conn().await?;
        invocation.invoke_async(&mut conn).await.map_err(unavailable)
    }

    pub(in crate::store) async fn log_after(
        &self,
        key: &str,
        after: Option<&str>,
        count: usize,
    ) -> StoreResult<Vec<StreamEntry>> {
        let start = match after {
            Some(id) => format!("({}", valid_id(id)?),
            None => "-".to_owned(),
        };
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.key(key)).arg(start).arg("+").arg("COUNT").arg(count.max(1));
        let mut found = entries(&self.query::<Value>(&cmd).await?)?;
        for entry in &mut found {
            entry.fields.retain(|(f, _)| f != LOG_MARK);
        }
        Ok(found)
    }

    pub(in crate::store) async fn log_last_id(&self, key: &str) -> StoreResult<Option<String>> {
        let mut cmd = redis::cmd("XREVRANGE");
        cmd.arg(self.key(key)).arg("+").arg("-").arg("COUNT").arg(1);
        Ok(entries(&self.query::<Value>(&cmd).await?)?.into_iter().next().map(|e| e.id))
    }

    pub(in crate::store) async fn stream_len(&self, key: &str) -> StoreResult<u64> {
        self.query(redis::cmd("XLEN").arg(self.key(key))).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn replies_parse_and_deleted_entries_are_left_out() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("q"),
            Value::Array(vec![
                Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("f"), bulk("v")])]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let got = read_reply(&reply).unwrap();
        assert_eq!(got, vec![StreamEntry { id: "1-0".into(), fields: vec![("f".into(), "v".into())] }]);
        assert!(read_reply(&Value::Nil).unwrap().is_empty());
        assert!(read_reply(&Value::Int(3)).is_err());
    }
}
