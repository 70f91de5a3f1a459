//! Configuration of a gateway. The two binaries differ only in [`Domain`] and default ports.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::client::ClientConfig;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

/// Which half of the API a gateway serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// `/v1/auth`, `/v1/users`, `/v1/quota`, `/.well-known/jwks.json`.
    Identity,
    /// `/v1/orders`, `/v1/articles`, `/v1/analytics`, `/v1/dashboard`.
    Business,
}

impl Domain {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Business => "business",
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which half of the API this gateway serves; each binary sets its own, whatever the file
    /// says. Default: `identity`.
    pub domain: Domain,
    /// HTTP listener. Default: `127.0.0.1:8081` (identity) / `127.0.0.1:8082` (business).
    pub listen: SocketAddr,
    /// Admin listener; the admin routes are also served on `listen`. Default: port 9081 / 9082.
    pub admin_listen: SocketAddr,
    /// Serve `/fault` on the admin routes, through which `meshctl chaos` injects latency and
    /// errors into this gateway's requests (docs/chaos.md). A test instrument: never on in
    /// production. Default: false.
    pub admin_faults: bool,
    /// Name of this instance in `x-mesh-gateway`. Default: `<domain>@<listen>`.
    pub instance: Option<String>,
    /// API key cache, last-known-good answers and the response cache (Redis in deployments).
    /// Default: private memory.
    pub store: StoreConfig,
    pub services: Services,
    pub jwt: JwtConfig,
    pub limits: Limits,
    pub cors: CorsConfig,
    /// How long a verified API key is trusted before asking auth again. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub api_key_cache_ttl: Duration,
    /// How long a last-known-good answer may be served when its service is down. Default: 24h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub fallback_ttl: Duration,
    /// How often a live answer that has not changed is written to the store again as the
    /// last-known-good one (its age restarts); a changed answer is written at once. `0s` writes
    /// every answer. Default: 60s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub fallback_refresh: Duration,
    /// How long a public read (`GET /v1/articles`, `GET /v1/articles/{id}`) is answered from the
    /// store without asking the service; `0s` turns the response cache off. Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub response_cache_ttl: Duration,
    /// Time allowed for one cache or snapshot operation on the store before it counts as a miss
    /// (the tier fails open). Default: 250ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub cache_timeout: Duration,
    /// The approximate per-principal limit kept while the quota service is down.
    pub local_quota: LocalQuotaConfig,
    /// Slices of each principal's quota window this gateway leases and meters by itself.
    pub quota_leases: crate::quota::LeaseConfig,
    /// Server-sent event streams: caps, buffering, keep-alive.
    pub streams: crate::streams::StreamConfig,
    /// Bounds of the durable order queue (business gateway): past them, 503 instead of 202.
    pub order_queue: crate::business::queue::QueueLimits,
    /// Peers (CIDRs) whose `X-Forwarded-For` / `Forwarded` name the client: the rate limits
    /// that key on the client's address see it, not the router's. Default: loopback
    /// (`127.0.0.0/8`, `::1`), the router on the same machine; where gateways are reachable only
    /// from the router (a NetworkPolicy), the pod network.
    pub trusted_proxies: mesh_core::forwarded::TrustedProxies,
    /// Login (per account and per client address) and registration (per address) throttles.
    pub throttle: crate::identity::throttle::ThrottleConfig,
}

/// The limit a gateway applies by itself while the quota service cannot answer. A principal's
/// last known plan wins over these defaults.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LocalQuotaConfig {
    /// Requests per window for a principal whose plan is unknown. Default: 1000 (the quota
    /// service's default `free` plan).
    pub limit: u64,
    /// The window `limit` counts over. Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub window: Duration,
    /// Principals counted at most; ended windows, then arbitrary ones, make room. Default: 100000.
    pub max_principals: usize,
}

impl Default for LocalQuotaConfig {
    fn default() -> Self {
        Self { limit: 1000, window: Duration::from_secs(3600), max_principals: 100_000 }
    }
}

/// The gRPC services a gateway calls, each a list of replica endpoints.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Services {
    pub auth: ClientConfig,
    pub user: ClientConfig,
    pub quota: ClientConfig,
    pub orders: ClientConfig,
    pub articles: ClientConfig,
    pub analytics: ClientConfig,
}

impl Default for Services {
    fn default() -> Self {
        let local = |port: u16| ClientConfig::to([format!("http://127.0.0.1:{port}")]);
        Self {
            auth: local(50051),
            user: local(50052),
            quota: local(50053),
            orders: local(50054),
            articles: local(50055),
            analytics: local(50056),
        }
    }
}

/// What an access token must say to be accepted.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// The `iss` a token must carry: auth's `issuer`. Default: `mesh-auth`.
    pub issuer: String,
    /// The `aud` a token must carry: auth's `audience`. Default: `mesh`.
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`. Keep it under a minute: auth remembers a revoked
    /// session for the access token lifetime plus one minute. Default: 5s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub leeway: Duration,
    /// How often the JWKS is fetched again from auth. Default: 5m.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub jwks_refresh: Duration,
    /// Least time between two fetches caused by an unknown `kid`. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub jwks_min_refetch: Duration,
    /// How long this gateway trusts that a token's session is not revoked before asking the
    /// store again (`auth:revoked:{sid}`): the longest a logout or a refresh-token reuse takes to
    /// stop the session's access tokens here, less one store read. `0s` asks on every request.
    /// Default: 500ms, so a revocation reaches every gateway within a second at one store read
    /// per session per 500 ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub revocation_cache_ttl: Duration,
    /// Sessions whose revocation verdict this gateway keeps at most; expired verdicts, then
    /// arbitrary ones, make room (a dropped verdict costs one store read). Default: 100000
    /// (about 10 MiB).
    pub revocation_cache_entries: usize,
    /// Access tokens whose verification this gateway remembers (by hash, until each expires),
    /// so a token's signature is checked once rather than on every request; `0` verifies every
    /// request. Expired tokens, then arbitrary ones, make room. Default: 100000 (about 25 MiB).
    pub token_cache_entries: usize,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuer: "mesh-auth".into(),
            audience: "mesh".into(),
            leeway: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
            revocation_cache_ttl: Duration::from_millis(500),
            revocation_cache_entries: 100_000,
            token_cache_entries: 100_000,
        }
    }
}

/// Edge protection.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body. Default: 64 KiB.
    pub body_bytes: usize,
    /// Whole-request deadline; service calls get what remains of it. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub request_timeout: Duration,
    /// Requests served at once; past it requests are shed with 503. Default: 1024.
    pub concurrency: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { body_bytes: 64 * 1024, request_timeout: Duration::from_secs(10), concurrency: 1024 }
    }
}

/// Cross-origin access. Empty `allowed_origins` leaves CORS off (same-origin only).
#[derive(Clone, Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins such as `https://app.example.com`, or `*` for any.
    pub allowed_origins: Vec<String>,
}

impl Config {
    /// Defaults for one domain.
    pub fn for_domain(domain: Domain) -> Self {
        let (port, admin) = match domain {
            Domain::Identity => (8081, 9081),
            Domain::Business => (8082, 9082),
        };
        Self {
            domain,
            listen: ([127, 0, 0, 1], port).into(),
            admin_listen: ([127, 0, 0, 1], admin).into(),
            admin_faults: false,
            instance: None,
            store: StoreConfig::default(),
            services: Services::default(),
            jwt: JwtConfig::default(),
            limits: Limits::default(),
            cors: CorsConfig::default(),
            api_key_cache_ttl: Duration::from_secs(30),
            fallback_ttl: Duration::from_secs(24 * 3600),
            fallback_refresh: crate::fallback::DEFAULT_REFRESH,
            response_cache_ttl: Duration::from_secs(30),
            cache_timeout: crate::fallback::DEFAULT_TIMEOUT,
            local_quota: LocalQuotaConfig::default(),
            quota_leases: crate::quota::LeaseConfig::default(),
            streams: crate::streams::StreamConfig::default(),
            order_queue: crate::business::queue::QueueLimits::default(),
            trusted_proxies: mesh_core::forwarded::TrustedProxies::loopback(),
            throttle: crate::identity::throttle::ThrottleConfig::default(),
        }
    }

    /// The name in `x-mesh-gateway`.
    pub fn instance_name(&self, bound: SocketAddr) -> String {
        self.instance.clone().unwrap_or_else(|| format!("{}@{bound}", self.domain.as_str()))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::for_domain(Domain::Identity)
    }
}

/// Nothing to check beyond the types.
impl mesh_core::config::Validate for Config {}

impl Listens for Config {
    fn listen(&self) -> SocketAddr {
        self.listen
    }

    fn admin_listen(&self) -> SocketAddr {
        self.admin_listen
    }

    fn store(&self) -> Option<&StoreConfig> {
        Some(&self.store)
    }

    fn admin_faults(&self) -> bool {
        self.admin_faults
    }
}

/// The business gateway binary's config: the same fields with business defaults.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct BusinessConfig(pub Config);

impl Default for BusinessConfig {
    fn default() -> Self {
        Self(Config::for_domain(Domain::Business))
    }
}

/// Nothing to check beyond the types.
impl mesh_core::config::Validate for BusinessConfig {}

impl Listens for BusinessConfig {
    fn listen(&self) -> SocketAddr {
        self.0.listen
    }

    fn admin_listen(&self) -> SocketAddr {
        self.0.admin_listen
    }

    fn store(&self) -> Option<&StoreConfig> {
        Some(&self.0.store)
    }

    fn admin_faults(&self) -> bool {
        self.0.admin_faults
    }
}

/// Keys whose environment value is a comma-separated list.
pub const LIST_KEYS: &[&str] = &[
    "services.auth.endpoints",
    "services.user.endpoints",
    "services.quota.endpoints",
    "services.orders.endpoints",
    "services.articles.endpoints",
    "services.analytics.endpoints",
    "cors.allowed_origins",
    "trusted_proxies",
];
