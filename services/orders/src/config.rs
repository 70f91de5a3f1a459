//! Configuration of the orders service.

use std::time::Duration;

use mesh_core::client::ClientConfig;
use serde::{Deserialize, Serialize};

pub use crate::events::EventsConfig;

mesh_core::service_config! {
    /// The orders service: orders and their events kept in `store`, the queue the gateways fill.
    pub struct Config {
        listen: 50054,
        admin_listen: 9054,
        /// The articles service's replicas. Default: `http://127.0.0.1:50055`, 1s connect, 5s deadline.
        pub articles: ClientConfig = ClientConfig::to(["http://127.0.0.1:50055"]),
        /// How long an Idempotency-Key is remembered after its first use (and what became of a
        /// queued order, `orders:queued:{id}`). Within it, the same key and items answer the same
        /// order; after it, the key is free again (as with most public APIs, keys are meant for
        /// retries, not as permanent names). The queue drain's exactly-once per key rests on it
        /// outliving any queue entry: the gateways refuse to queue once the oldest entry waits their
        /// `order_queue.max_age` (1h by default), so keep this at least four times that. Default: 24h.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "mesh_core::config::HumanDuration")]
        pub idempotency_ttl: Duration = Duration::from_secs(24 * 3600),
        /// The consumer of the order queue the gateways fill during an outage.
        pub queue: QueueConfig = QueueConfig::default(),
        /// Each order's status event log (`WatchOrder`): how much it keeps, for how long.
        pub events: EventsConfig = EventsConfig::default(),
    }
}

/// Keys whose environment value is a comma-separated list:
/// `MESH_ARTICLES__ENDPOINTS=http://a:50055,http://b:50055`.
pub const LIST_KEYS: &[&str] = &["articles.endpoints"];

impl mesh_core::config::Validate for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Config::validate(self)
    }
}

/// How this replica drains the order queue (see [`crate::queue`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Create the orders the gateways queued while no orders replica answered. Turn it off only
    /// on replicas that must not write (queued orders then wait for another). Default: true.
    pub enabled: bool,
    /// How long to wait before looking again when a look found no new entry. Default: 200ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub poll_interval: Duration,
    /// How long an entry may stay unacknowledged with one consumer before another replica takes
    /// it over (its consumer is presumed dead). Longer than one order takes to create, or two
    /// replicas work on it at once (harmless, but wasted). Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub claim_idle: Duration,
    /// How often this replica tries its own entries again after a transient failure (articles
    /// or the store down). Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub retry_interval: Duration,
    /// Entries read at once. Default: 32.
    pub batch_size: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval: Duration::from_millis(200),
            claim_idle: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            batch_size: 32,
        }
    }
}

impl Config {
    /// Refuses a configuration that could not serve.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.articles.endpoints.is_empty(), "articles.endpoints must not be empty");
        anyhow::ensure!(
            self.idempotency_ttl >= Duration::from_secs(60),
            "idempotency_ttl must be at least 60s, longer than any retry of one request"
        );
        anyhow::ensure!(self.events.log_len >= 1, "events.log_len must be at least 1");
        anyhow::ensure!(self.events.log_max_bytes >= 1024, "events.log_max_bytes must be at least 1024");
        anyhow::ensure!(
            self.events.log_ttl >= Duration::from_secs(60),
            "events.log_ttl must be at least 60s"
        );
        let queue = &self.queue;
        anyhow::ensure!((1..=1000).contains(&queue.batch_size), "queue.batch_size must be 1 to 1000");
        anyhow::ensure!(
            queue.poll_interval >= Duration::from_millis(10),
            "queue.poll_interval must be at least 10ms"
        );
        anyhow::ensure!(
            queue.retry_interval >= Duration::from_millis(10),
            "queue.retry_interval must be at least 10ms"
        );
        anyhow::ensure!(
            queue.claim_idle >= Duration::from_millis(100),
            "queue.claim_idle must be at least 100ms"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn articles_endpoints_are_a_comma_separated_list_in_the_environment() {
        // The list key `main.rs` declares; a nested key is named by its dotted path.
        let cfg: Config = mesh_core::config::Sources::from_env([(
            "MESH_ARTICLES__ENDPOINTS",
            "http://a:50055,http://b:50055",
        )])
        .with_list_key("articles.endpoints")
        .load()
        .unwrap();
        assert_eq!(cfg.articles.endpoints, ["http://a:50055", "http://b:50055"]);
        cfg.validate().unwrap();
    }

    #[test]
    fn the_queue_consumer_is_on_by_default_and_tunable_from_the_environment() {
        let cfg: Config = mesh_core::config::Sources::from_env([
            ("MESH_QUEUE__ENABLED", "false"),
            ("MESH_QUEUE__CLAIM_IDLE", "5s"),
            ("MESH_QUEUE__BATCH_SIZE", "8"),
        ])
        .load()
        .unwrap();
        assert!(!cfg.queue.enabled);
        assert_eq!((cfg.queue.claim_idle, cfg.queue.batch_size), (Duration::from_secs(5), 8));
        cfg.validate().unwrap();
        assert!(Config::default().queue.enabled);
        let zero =
            Config { queue: QueueConfig { batch_size: 0, ..QueueConfig::default() }, ..Config::default() };
        assert!(zero.validate().is_err());
    }

    #[test]
    fn stored_bounds_have_their_documented_defaults_and_are_tunable() {
        let cfg = Config::default();
        assert_eq!(cfg.idempotency_ttl, Duration::from_secs(24 * 3600));
        assert_eq!(cfg.events.bounds(), crate::events::DEFAULT_BOUNDS);
        let b = crate::events::DEFAULT_BOUNDS;
        assert_eq!((b.max_len, b.max_bytes, b.ttl), (100, 32 * 1024, Duration::from_secs(7 * 24 * 3600)));
        let cfg: Config = mesh_core::config::Sources::from_env([
            ("MESH_EVENTS__LOG_LEN", "20"),
            ("MESH_EVENTS__LOG_MAX_BYTES", "4096"),
            ("MESH_EVENTS__LOG_TTL", "1d"),
            ("MESH_IDEMPOTENCY_TTL", "48h"),
        ])
        .load()
        .unwrap();
        cfg.validate().unwrap();
        assert_eq!((cfg.events.log_len, cfg.events.log_max_bytes), (20, 4096));
        assert_eq!(
            (cfg.events.log_ttl, cfg.idempotency_ttl),
            (Duration::from_secs(86400), Duration::from_secs(172800))
        );
    }
}
