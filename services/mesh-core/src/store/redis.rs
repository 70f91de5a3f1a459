//! The Redis backend: shared by every replica, so any replica can serve any request.
//!
//! A `ConnectionManager` multiplexes one connection and reconnects in the background; every
//! command is bounded by the configured response timeout, so a hung Redis fails calls quickly
//! (as `StoreError::Unavailable`) instead of stalling them. Streams live in `redis/stream.rs`.

mod stream;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};

use super::{Bounded, StoreConfig, StoreError, StoreResult};

/// Lua keeps check-and-add one atomic step. Bounds arrive clamped to ±2^53 (Lua numbers are doubles).
const ADD_BOUNDED: &str = r#"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local nxt = cur + tonumber(ARGV[1])
if nxt < tonumber(ARGV[2]) or nxt > tonumber(ARGV[3]) then
  return {0, cur}
end
if redis.call('EXISTS', KEYS[1]) == 0 and tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], nxt, 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], nxt, 'KEEPTTL')
end
return {1, nxt}
"#;

/// Lua keeps compare-and-delete one atomic step. A key of another type is never equal: `TYPE`
/// first, because `GET` on a hash or an index would fail the call instead of answering "no".
const DELETE_IF_EQ: &str = r#"
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

const RENEW_IF_EQ: &str = r#"
if redis.call('TYPE', KEYS[1]).ok == 'string' and redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

const LUA_SAFE: i64 = 1 << 53;

#[derive(Clone)]
pub struct RedisStore {
    prefix: String,
    link: Arc<Link>,
    rests: super::failopen::Rests,
    add_bounded: Script,
    delete_if_eq: Script,
    renew_if_eq: Script,
    log_append: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn millis(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

/// The connection to Redis, made on first use rather than at start: every component starts
/// while Redis is down (the store tier fails open), and connects once it is back. Once made,
/// redis' `ConnectionManager` reconnects by itself.
struct Link {
    client: redis::Client,
    config: ConnectionManagerConfig,
    connect_timeout: Duration,
    conn: tokio::sync::OnceCell<ConnectionManager>,
    /// When the last attempt to connect failed: calls fail at once for a moment after, so an
    /// outage costs one connect attempt per pause, not one per call.
    failed_at: Mutex<Option<Instant>>,
}

/// How long calls fail at once after a failed connect.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

// === impl RedisStore ===

impl RedisStore {
    /// Checks the URL and prepares the connection; connects on the first call.
    pub async fn connect(url: &str, cfg: &StoreConfig) -> StoreResult<Self> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.command_timeout))
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let link = Arc::new(Link {
            client,
            config,
            connect_timeout: cfg.connect_timeout,
            conn: tokio::sync::OnceCell::new(),
            failed_at: Mutex::new(None),
        });
        Ok(Self {
            prefix: cfg.key_prefix.clone(),
            link,
            rests: Default::default(),
            add_bounded: Script::new(ADD_BOUNDED),
            delete_if_eq: Script::new(DELETE_IF_EQ),
            renew_if_eq: Script::new(RENEW_IF_EQ),
            log_append: Script::new(stream::LOG_APPEND),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub(super) fn rests(&self) -> &super::failopen::Rests {
        &self.rests
    }

    /// The connection, made now if it was not yet.
    async fn conn(&self) -> StoreResult<ConnectionManager> {
        let link = &self.link;
        if let Some(conn) = link.conn.get() {
            return Ok(conn.clone());
        }
        let paused = link
            .failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < RECONNECT_PAUSE);
        if paused {
            return Err(StoreError::Unavailable("not connected to Redis yet".into()));
        }
        let connect = link
            .conn
            .get_or_try_init(|| ConnectionManager::new_with_config(link.client.clone(), link.config.clone()));
        // The manager's own retries (2, each bounded by the connect timeout) plus their pauses.
        let bound = link.connect_timeout * 3 + Duration::from_secs(1);
        let result = match tokio::time::timeout(bound, connect).await {
            Ok(Ok(conn)) => Ok(conn.clone()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(format!("connecting to Redis timed out after {bound:?}"))),
        };
        if result.is_err() {
            *link.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        }
        result
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn().await?;
        cmd.query_async(&mut conn).await.map_err(unavailable)
    }

    pub(super) async fn ping(&self) -> StoreResult<()> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    pub(super) async fn get(&self, key: &str) -> StoreResult<Option<String>> {
        self.query(redis::cmd("GET").arg(self.key(key))).await
    }

    pub(super) async fn get_many(&self, keys: &[String]) -> StoreResult<Vec<Option<String>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let full: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        self.query(redis::cmd("MGET").arg(full)).await
    }

    pub(super) async fn set(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<()> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let _: Value = self.query(&cmd).await?;
        Ok(())
    }

    pub(super) async fn set_nx(&self, key: &str, value: &str, ttl: Option<Duration>) -> StoreResult<bool> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let reply: Option<String> = self.query(&cmd).await?;
        Ok(reply.is_some())
    }

    pub(super) async fn replace(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<Option<String>> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("XX").arg("GET");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        self.query(&cmd).await
    }

    pub(super) async fn delete(&self, key: &str) -> StoreResult<bool> {
        let removed: i64 = self.query(redis::cmd("DEL").arg(self.key(key))).await?;
        Ok(removed > 0)
    }

    pub(super) async fn delete_if_eq(&self, key: &str, expected: &str) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let removed: i64 = self
            .delete_if_eq
            .key(self.key(key))
            .arg(expected)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(removed > 0)
    }

    pub(super) async fn renew_if_eq(&self, key: &str, expected: &str, ttl: Duration) -> StoreResult<bool> {
        let mut conn = self.conn().await?;
        let renewed: i64 = self
            .renew_if_eq
            .key(self.key(key))
            .arg(expected)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(renewed > 0)
    }

    pub(super) async fn add_bounded(
        &self,
        key: &str,
        delta: i64,
        min: i64,
        max: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<Bounded> {
        let mut conn = self.conn().await?;
        let (applied, value): (i64, i64) = self
            .add_bounded
            .key(self.key(key))
            .arg(delta.clamp(-LUA_SAFE, LUA_SAFE))
            .arg(min.clamp(-LUA_SAFE, LUA_SAFE))
            .arg(max.clamp(-LUA_SAFE, LUA_SAFE))
            .arg(ttl.map(millis).unwrap_or(0))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(if applied == 1 { Bounded::Applied(value) } else { Bounded::Refused(value) })
    }

    pub(super) async fn ttl(&self, key: &str) -> StoreResult<Option<Duration>> {
        let ms: i64 = self.query(redis::cmd("PTTL").arg(self.key(key))).await?;
        Ok((ms >= 0).then(|| Duration::from_millis(ms as u64)))
    }

    pub(super) async fn index_add(&self, key: &str, member: &str) -> StoreResult<()> {
        let _: i64 = self.query(redis::cmd("ZADD").arg(self.key(key)).arg(0).arg(member)).await?;
        Ok(())
    }

    pub(super) async fn index_remove(&self, key: &str, member: &str) -> StoreResult<bool> {
        let removed: i64 = self.query(redis::cmd("ZREM").arg(self.key(key)).arg(member)).await?;
        Ok(removed > 0)
    }

    pub(super) async fn index_page(
        &self,
        key: &str,
        after: Option<&str>,
        limit: usize,
        descending: bool,
    ) -> StoreResult<Vec<String>> {
        // All scores are 0, so lexicographic ranges order members byte-wise.
        let bound = after.map(|a| format!("({a}"));
        let mut cmd = if descending {
            let mut c = redis::cmd("ZREVRANGEBYLEX");
            c.arg(self.key(key)).arg(bound.as_deref().unwrap_or("+")).arg("-");
            c
        } else {
            let mut c = redis::cmd("ZRANGEBYLEX");
            c.arg(self.key(key)).arg(bound.as_deref().unwrap_or("-")).arg("+");
            c
        };
        cmd.arg("LIMIT").arg(0).arg(limit);
        self.query(&cmd).await
    }

    pub(super) async fn hash_incr(
        &self,
        key: &str,
        field: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> StoreResult<i64> {
        let key = self.key(key);
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HINCRBY").arg(&key).arg(field).arg(delta);
        if let Some(ttl) = ttl {
            pipe.cmd("PEXPIRE").arg(&key).arg(millis(ttl)).ignore();
        }
        let mut conn = self.conn().await?;
        let (value,): (i64,) = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(value)
    }

    pub(super) async fn hash_get_all_many(&self, keys: &[String]) -> StoreResult<Vec<Vec<(String, i64)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("HGETALL").arg(self.key(key));
        }
        let mut conn = self.conn().await?;
        pipe.query_async(&mut conn).await.map_err(unavailable)
    }
}
