//! Configuration of the router: the classification table and the gateway pools.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

/// One row of the classification table. A request matches when every given condition holds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Path prefix, matched on whole segments: `/v1/orders` matches `/v1/orders/1`, not `/v1/ordersx`.
    pub prefix: String,
    /// Only this method, when set.
    #[serde(default)]
    pub method: Option<String>,
    /// Only this `Host` (without port), when set.
    #[serde(default)]
    pub host: Option<String>,
    /// Only when this header is present with this value: `["name", "value"]`.
    #[serde(default)]
    pub header: Option<(String, String)>,
    /// The pool that serves matching requests.
    pub pool: String,
}

/// Gateway instances serving one domain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `host:port` of each instance. A name is resolved again every `dns_refresh` and each
    /// address it resolves to is an instance (a Kubernetes headless Service works as is).
    pub instances: Vec<String>,
    /// Requests of this pool in flight at once; past it requests are shed with 503. Default: 1024.
    #[serde(default = "default_pool_concurrency")]
    pub max_concurrency: usize,
}

fn default_pool_concurrency() -> usize {
    1024
}

impl Pool {
    pub fn of(instances: Vec<String>) -> Self {
        Self { instances, max_concurrency: default_pool_concurrency() }
    }
}

/// Active and passive health checking of instances.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often every instance's `/readyz` is probed. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A probe slower than this fails. Default: 500ms.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// First ejection time after a failure; doubles on each ejection in a row. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub eject_base: Duration,
    /// Longest ejection. Default: 30s.
    #[serde(with = "humantime_serde")]
    pub eject_max: Duration,
    /// 5xx answers in a row that eject an instance. Default: 5.
    pub consecutive_5xx: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
            consecutive_5xx: 5,
        }
    }
}

/// How much retrying the router may do: a share of recent requests plus a small floor, so
/// retries never multiply an outage.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per request, the first included. Default: 3.
    pub max_attempts: u32,
    /// Retries allowed as a fraction of requests in the window. Default: 0.2.
    pub budget_ratio: f32,
    /// Retries per second allowed whatever the traffic. Default: 10.
    pub budget_min_per_second: u32,
    /// How long a request counts towards the budget. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub budget_window: Duration,
    /// Largest request body kept so the request can be sent again. Default: 64 KiB.
    pub body_limit: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
            budget_window: Duration::from_secs(10),
            body_limit: 64 * 1024,
        }
    }
}

/// Limits on what clients send and how long they take.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Time allowed for a client to send a request's headers (slowloris), and for an idle
    /// keep-alive connection to start its next request. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Headers per request; more is 431. Default: 64.
    pub max_headers: usize,
    /// Bytes of the request line and headers; more is 431. Default: 16 KiB (at least 8 KiB).
    pub max_header_bytes: usize,
    /// Largest request body; more is 413. Default: 1 MiB.
    pub max_body_bytes: u64,
    /// Requests per second per client address (token bucket); 0 turns the limit off. Default: 200.
    pub per_client_rps: u32,
    /// Burst above the rate. Default: 400.
    pub per_client_burst: u32,
}

impl Default for ClientLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            per_client_rps: 200,
            per_client_burst: 400,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Default: `127.0.0.1:9080`; the admin routes are also served on `listen`.
    pub admin_listen: SocketAddr,
    /// Ordered; the first match wins. Default: the API of ARCHITECTURE §3.
    pub rules: Vec<Rule>,
    /// Default: `identity` at 127.0.0.1:8081, `business` at 127.0.0.1:8082.
    pub pools: BTreeMap<String, Pool>,
    /// Time allowed to connect to an instance. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for an instance to start answering (response headers) per attempt; the
    /// body then streams without a deadline. Default: 15s.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    /// How often instance host names are resolved again. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub dns_refresh: Duration,
    pub health: HealthConfig,
    pub retry: RetryConfig,
    pub limits: ClientLimits,
    /// With a Redis URL, the per-client rate limit is shared by every router replica.
    pub store: StoreConfig,
}

fn rule(prefix: &str, pool: &str) -> Rule {
    Rule { prefix: prefix.into(), method: None, host: None, header: None, pool: pool.into() }
}

/// The routing table of §3.
pub fn default_rules() -> Vec<Rule> {
    vec![
        rule("/v1/auth", "identity"),
        rule("/v1/users", "identity"),
        rule("/v1/quota", "identity"),
        rule("/.well-known/jwks.json", "identity"),
        rule("/v1/orders", "business"),
        rule("/v1/articles", "business"),
        rule("/v1/analytics", "business"),
        rule("/v1/dashboard", "business"),
    ]
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            admin_listen: ([127, 0, 0, 1], 9080).into(),
            rules: default_rules(),
            pools: BTreeMap::from([
                ("identity".into(), Pool::of(vec!["127.0.0.1:8081".into()])),
                ("business".into(), Pool::of(vec!["127.0.0.1:8082".into()])),
            ]),
            connect_timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(15),
            dns_refresh: Duration::from_secs(5),
            health: HealthConfig::default(),
            retry: RetryConfig::default(),
            limits: ClientLimits::default(),
            store: StoreConfig::default(),
        }
    }
}

impl Config {
    /// Every rule must name a configured, non-empty pool; limits must be usable.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
        anyhow::ensure!(
            self.limits.max_header_bytes >= 8192,
            "limits.max_header_bytes must be at least 8192"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.retry.budget_ratio),
            "retry.budget_ratio must be within 0..=1"
        );
        for rule in &self.rules {
            let pool = self.pools.get(&rule.pool);
            anyhow::ensure!(
                pool.is_some(),
                "rule {:?} names pool {:?}, which is not configured",
                rule.prefix,
                rule.pool
            );
            anyhow::ensure!(
                pool.is_some_and(|p| !p.instances.is_empty()),
                "pool {:?} has no instances",
                rule.pool
            );
        }
        Ok(())
    }
}

impl Listens for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn admin_listen(&self) -> SocketAddr {
        self.admin_listen
    }
}

/// Keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &["pools.identity.instances", "pools.business.instances"];
