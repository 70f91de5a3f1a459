//! Configuration of the router: the classification table and the gateway pools.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::forwarded::TrustedProxies;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

/// One row of the classification table. A request matches when every given condition holds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// `host:port` of each instance. A name is resolved again every `dns_refresh` and each
    /// address it resolves to is an instance (a Kubernetes headless Service works as is).
    pub instances: Vec<String>,
    /// Requests of this pool in flight at once; past it requests are shed with 503. A request
    /// takes its slot only once a body it keeps for retries is in, so slow uploads never hold
    /// one. Default: 1024.
    #[serde(default = "default_pool_concurrency")]
    pub max_concurrency: usize,
    /// Long streams (`text/event-stream`) of this pool open at once, a budget of their own so
    /// streams cannot fill the request slots; past it 503. Default: 1024.
    #[serde(default = "default_pool_streams")]
    pub max_streams: usize,
    /// Requests of this pool whose body streams through (larger than `retry.body_limit`, or of
    /// unknown size) at once, apart from the request slots; past it 503. Default: 64.
    #[serde(default = "default_pool_uploads")]
    pub max_uploads: usize,
}

fn default_pool_concurrency() -> usize {
    1024
}

fn default_pool_streams() -> usize {
    1024
}

fn default_pool_uploads() -> usize {
    64
}

impl Pool {
    pub fn of(instances: Vec<String>) -> Self {
        Self {
            instances,
            max_concurrency: default_pool_concurrency(),
            max_streams: default_pool_streams(),
            max_uploads: default_pool_uploads(),
        }
    }
}

/// Active and passive health checking of instances.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// How often every instance's `/readyz` is probed. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub interval: Duration,
    /// A probe slower than this fails, unless the instance answered requests since the previous
    /// probe (busy, not down: it stays in). Default: 500ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub timeout: Duration,
    /// First ejection time after a failure; doubles on each ejection in a row. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub eject_base: Duration,
    /// Longest ejection. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub eject_max: Duration,
    /// 5xx answers in a row that eject an instance. Default: 5.
    pub consecutive_5xx: u32,
    /// Largest share of a pool's instances that passive ejection may hold out at once, in
    /// percent (Envoy's `max_ejection_percent`); at least one instance always stays in. The
    /// active probe still takes out an instance that is really down. Default: 50.
    pub max_ejection_percent: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
            consecutive_5xx: 5,
            max_ejection_percent: 50,
        }
    }
}

/// How much retrying the router may do: a share of recent requests plus a small floor, so
/// retries never multiply an outage.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
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
    #[schemars(with = "mesh_core::config::HumanDuration")]
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

/// The access log: one JSON line per forwarded request, on the log output with target
/// `access` (docs/observability.md has its fields). Errors (5xx) and the router's own refusals
/// are always logged while it is enabled; other answers are sampled.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// Write the access log. `MESH_LOG=info,access=off` also silences it. Default: true.
    pub enabled: bool,
    /// Share of successful requests (status below 500, answered by a gateway) logged, from 0.0
    /// (none) to 1.0 (all). Default: 1.0.
    pub sample: f64,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self { enabled: true, sample: 1.0 }
    }
}

/// Limits on what clients send, how long they take and how much of the router they hold.
/// Past a time limit the connection is closed (408 first where a request is under way); past a
/// count limit the connection is refused at accept. Every refusal is counted in a metric.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ClientLimits {
    /// Time allowed for a new connection's first byte; a socket that stays silent is closed.
    /// Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub first_byte_timeout: Duration,
    /// Time allowed for a client to send a request's headers (slowloris), counted from the
    /// connection's accept for its first request (so a trickled HTTP/2 preface is cut off too),
    /// and for an idle HTTP/1 keep-alive connection to start its next request. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub header_read_timeout: Duration,
    /// Longest wait for the next piece of a request body; past it 408 and close. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub body_idle_timeout: Duration,
    /// Longest time a whole request body may take, from its headers on; past it 408 and
    /// close. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub body_total_timeout: Duration,
    /// An HTTP/2 connection with no request in flight for this long is closed. (An idle HTTP/1
    /// keep-alive connection is closed sooner, at `header_read_timeout`: hyper re-arms that
    /// timer while it waits for the next head.) Default: 60s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub idle_timeout: Duration,
    /// Longest a write to the client may make no progress, and a response frame may wait for
    /// the client to take it (an HTTP/2 client that never opens its flow-control window stalls
    /// no write); past it the connection is closed, so a slow reader pins no buffer, pool slot
    /// or upstream connection. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub write_timeout: Duration,
    /// Client connections open at once; past it new ones are closed at accept. Default: 10000.
    pub max_connections: usize,
    /// Client connections open at once from one address (the TCP peer; trusted proxies are
    /// exempt, since they carry many clients); past it closed at accept. Default: 256.
    pub max_connections_per_client: usize,
    /// HTTP/2 streams a client may open at once on one connection. Default: 128.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams a client may reset before the router accepts them, before the
    /// connection is closed (the rapid-reset attack, CVE-2023-44487). Default: 20.
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 keep-alive ping interval; a client that does not answer within
    /// `h2_keep_alive_timeout` is closed. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub h2_keep_alive_interval: Duration,
    /// Time a client has to answer an HTTP/2 keep-alive ping before the connection is closed.
    /// Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub h2_keep_alive_timeout: Duration,
    /// Bytes the router buffers per HTTP/2 stream towards a client that reads slowly.
    /// Default: 256 KiB.
    pub h2_max_send_buf_size: usize,
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
            first_byte_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(10),
            body_total_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_client: 256,
            h2_max_concurrent_streams: 128,
            h2_max_pending_accept_reset_streams: 20,
            h2_keep_alive_interval: Duration::from_secs(30),
            h2_keep_alive_timeout: Duration::from_secs(10),
            h2_max_send_buf_size: 256 * 1024,
            max_headers: 64,
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            per_client_rps: 200,
            per_client_burst: 400,
        }
    }
}

/// The status page's history of each pool's answers: its req/s, error rate and p99 charts, and
/// the `history` of each pool in the JSON view of `/mesh/status`. Kept in the router's memory
/// in a fixed ring of `history / bucket` buckets (about 0.8 KiB each, per pool), so it is
/// bounded whatever the traffic, and lost on restart.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// How far back the history goes. At most 3600 buckets. Default: 5m.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub history: Duration,
    /// The width of one bucket: one point of each chart, with its own count and latency
    /// histogram (the p99 is the bucket's). From 100ms to 1m. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub bucket: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        Self { history: Duration::from_secs(300), bucket: Duration::from_secs(5) }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Public HTTP listener (HTTP/1.1 and HTTP/2) the clients connect to. Default: `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin listener: `/healthz`, `/readyz`, `/metrics`, `/mesh/status`. Default: `127.0.0.1:9080`.
    pub admin_listen: SocketAddr,
    /// Serve `/fault` on the admin listener, through which `meshctl chaos` injects latency and
    /// errors into the router's requests (docs/chaos.md). A test instrument: never on in
    /// production. Default: false.
    pub admin_faults: bool,
    /// Also serve `/metrics` and `/mesh/status` on the public `listen` port (after the rate
    /// limit). They show instance addresses and breaker states, so default: false.
    pub admin_on_public_port: bool,
    /// CIDRs of proxies in front of the router (an Ingress, a load balancer) whose
    /// `X-Forwarded-For` / `Forwarded` name the client; the client is then the right-most hop
    /// that is not trusted. It keys the rate limit and the logs, and is the `X-Forwarded-For`
    /// sent on. Default: none (the TCP peer is the client).
    pub trusted_proxies: TrustedProxies,
    /// Ordered; the first match wins. Default: the API of docs/ARCHITECTURE.md §3.
    pub rules: Vec<Rule>,
    /// Gateway pools by name, as the rules name them. Default: `identity` at 127.0.0.1:8081,
    /// `business` at 127.0.0.1:8082.
    pub pools: BTreeMap<String, Pool>,
    /// Time allowed to connect to an instance. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub connect_timeout: Duration,
    /// Time allowed for an instance to start answering (response headers) per attempt; the
    /// body then streams without a deadline. Default: 15s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub attempt_timeout: Duration,
    /// How often instance host names are resolved again. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub dns_refresh: Duration,
    /// Active and passive health checking of each pool's instances.
    pub health: HealthConfig,
    /// Retries of a failed attempt on another instance, and their budget.
    pub retry: RetryConfig,
    /// Limits on what clients send and hold.
    pub limits: ClientLimits,
    /// The status page's charts: how much of each pool's history the router keeps.
    pub status: StatusConfig,
    /// With a Redis URL, the per-client rate limit is shared by every router replica.
    pub store: StoreConfig,
    /// The access log: one JSON line per request on log target `access`.
    pub access_log: AccessLogConfig,
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
            admin_faults: false,
            admin_on_public_port: false,
            trusted_proxies: TrustedProxies::default(),
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
            status: StatusConfig::default(),
            store: StoreConfig::default(),
            access_log: AccessLogConfig::default(),
        }
    }
}

impl Config {
    /// Every rule must name a configured, non-empty pool; limits must be usable.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.retry.max_attempts >= 1, "retry.max_attempts must be at least 1");
        // Deadlines are added to instants; a day is far past any sane one and far from overflow.
        let limits = &self.limits;
        for (key, value) in [
            ("limits.first_byte_timeout", limits.first_byte_timeout),
            ("limits.header_read_timeout", limits.header_read_timeout),
            ("limits.body_idle_timeout", limits.body_idle_timeout),
            ("limits.body_total_timeout", limits.body_total_timeout),
            ("limits.idle_timeout", limits.idle_timeout),
            ("limits.write_timeout", limits.write_timeout),
            ("limits.h2_keep_alive_interval", limits.h2_keep_alive_interval),
            ("limits.h2_keep_alive_timeout", limits.h2_keep_alive_timeout),
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("health.interval", self.health.interval),
            ("health.timeout", self.health.timeout),
            ("health.eject_max", self.health.eject_max),
        ] {
            anyhow::ensure!(
                value > Duration::ZERO && value <= Duration::from_secs(86_400),
                "{key} must be more than 0s and at most 1 day, not {value:?}"
            );
        }
        anyhow::ensure!(
            self.limits.max_header_bytes >= 8192,
            "limits.max_header_bytes must be at least 8192"
        );
        anyhow::ensure!(
            self.health.max_ejection_percent <= 100,
            "health.max_ejection_percent must be within 0..=100"
        );
        anyhow::ensure!(
            self.limits.max_connections >= 1 && self.limits.max_connections_per_client >= 1,
            "limits.max_connections and limits.max_connections_per_client must be at least 1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.retry.budget_ratio),
            "retry.budget_ratio must be within 0..=1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.access_log.sample),
            "access_log.sample must be within 0..=1"
        );
        let status = &self.status;
        anyhow::ensure!(
            status.bucket >= Duration::from_millis(100) && status.bucket <= Duration::from_secs(60),
            "status.bucket must be from 100ms to 1m, not {:?}",
            status.bucket
        );
        anyhow::ensure!(
            status.history >= status.bucket && status.history.as_nanos() / status.bucket.as_nanos() <= 3600,
            "status.history must be at least status.bucket and at most 3600 of them, not {:?}",
            status.history
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

impl mesh_core::config::Validate for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Config::validate(self)
    }
}

impl Listens for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn admin_listen(&self) -> SocketAddr {
        self.admin_listen
    }

    fn admin_faults(&self) -> bool {
        self.admin_faults
    }
}

/// Keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &["pools.identity.instances", "pools.business.instances", "trusted_proxies"];
