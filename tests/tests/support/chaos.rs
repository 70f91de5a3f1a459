//! The chaos harness: services in this process (two replicas each, real gRPC, real Redis),
//! gateways as real processes that tests kill, stop and restart, and the router in front.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::store::StoreConfig;
use mesh_tests::process::{ServiceProcess, binary};
use mesh_tests::{Component, RedisServer, unique_prefix, wait_until};
use meshctl::{Kind, Mesh, MeshOptions};
use reqwest::Method;
use serde_json::{Value, json};

use super::{ADMIN_EMAIL, PASSWORD};

/// A gateway process and how to start it again on the same address.
pub(crate) struct Gateway {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    binary: std::path::PathBuf,
    env: Vec<(String, String)>,
    pub(crate) process: Option<ServiceProcess>,
}

impl Gateway {
    async fn start(name: &str, binary_name: &str, env: Vec<(String, String)>) -> Self {
        let binary = binary(binary_name);
        let mut gateway =
            Self { name: name.into(), addr: "127.0.0.1:0".parse().unwrap(), binary, env, process: None };
        gateway.spawn("127.0.0.1:0");
        gateway.addr = gateway.process.as_ref().unwrap().addr;
        gateway
    }

    fn spawn(&mut self, listen: &str) {
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("MESH_LISTEN", listen));
        env.push(("MESH_INSTANCE", &self.name));
        self.process = Some(ServiceProcess::start(&self.binary, &env).expect("gateway process starts"));
    }

    pub(crate) fn signal(&self, signal: &str) {
        self.process.as_ref().expect("running").signal(signal).unwrap();
    }

    /// SIGKILL, and reap it.
    pub(crate) async fn kill(&mut self) {
        let mut process = self.process.take().expect("running");
        process.signal("KILL").unwrap();
        process.wait_exit(Duration::from_secs(5)).await.unwrap();
    }

    /// Starts it again on the address it had.
    pub(crate) fn restart(&mut self) {
        let addr = self.addr.to_string();
        self.spawn(&addr);
    }
}

pub(crate) struct Chaos {
    pub(crate) _redis: RedisServer,
    pub(crate) services: Mesh,
    pub(crate) identity: Vec<Gateway>,
    pub(crate) business: Vec<Gateway>,
    pub(crate) router: Component,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    /// The router's admin listener: `/metrics`, `/mesh/status`.
    pub(crate) admin_base: String,
}

impl Chaos {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts everything; `tweak` adjusts the router's config.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut gateway_router::Config)) -> Self {
        Self::start_with_gateway_env(&[], tweak).await
    }

    /// Like [`Chaos::start_with`], with `extra` added to every gateway process's environment.
    pub(crate) async fn start_with_gateway_env(
        extra: &[(&str, &str)],
        tweak: impl FnOnce(&mut gateway_router::Config),
    ) -> Self {
        Self::start_customised(extra, tweak, |_| {}).await
    }

    /// Like [`Chaos::start_with_gateway_env`]; `customise` adjusts the in-process services last.
    pub(crate) async fn start_customised(
        extra: &[(&str, &str)],
        tweak: impl FnOnce(&mut gateway_router::Config),
        customise: impl FnOnce(&mut MeshOptions),
    ) -> Self {
        let redis = RedisServer::start().await.unwrap();
        let store = StoreConfig {
            redis_url: Some(redis.url()),
            key_prefix: unique_prefix("chaos"),
            ..StoreConfig::default()
        };
        let mut opts = MeshOptions {
            store: store.clone(),
            replicas: 2,
            fixed_ports: false,
            with_edge: false,
            configure_auth: Arc::new(|cfg: &mut auth_service::Config| {
                cfg.admin_emails = vec![ADMIN_EMAIL.into()];
                cfg.password_hash =
                    auth_service::PasswordHashConfig { memory_kib: 256, iterations: 1, parallelism: 1 };
            }),
            configure_quota: Arc::new(|cfg: &mut quota_service::Config| {
                let window = Duration::from_secs(3600);
                cfg.plans =
                    BTreeMap::from([("free".into(), quota_service::Plan { limit: 10_000_000, window })]);
            }),
            ..MeshOptions::default()
        };
        customise(&mut opts);
        let services = Mesh::start(opts).await.unwrap();
        services.wait_ready(Duration::from_secs(20)).await.unwrap();

        let endpoints = |kind: Kind| -> String {
            services
                .components
                .iter()
                .filter(|c| c.kind == kind)
                .map(|c| format!("http://{}", c.addr))
                .collect::<Vec<_>>()
                .join(",")
        };
        let env: Vec<(String, String)> = vec![
            ("REDIS_URL".into(), redis.url()),
            ("MESH_STORE__KEY_PREFIX".into(), store.key_prefix.clone()),
            ("MESH_LOG".into(), "warn,mesh_core::process=info".into()),
            ("MESH_SERVICES__AUTH__ENDPOINTS".into(), endpoints(Kind::Auth)),
            ("MESH_SERVICES__USER__ENDPOINTS".into(), endpoints(Kind::User)),
            ("MESH_SERVICES__QUOTA__ENDPOINTS".into(), endpoints(Kind::Quota)),
            ("MESH_SERVICES__ORDERS__ENDPOINTS".into(), endpoints(Kind::Orders)),
            ("MESH_SERVICES__ARTICLES__ENDPOINTS".into(), endpoints(Kind::Articles)),
            ("MESH_SERVICES__ANALYTICS__ENDPOINTS".into(), endpoints(Kind::Analytics)),
        ];
        let mut env = env;
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let mut identity = Vec::new();
        let mut business = Vec::new();
        for i in 1..=2 {
            identity.push(Gateway::start(&format!("identity-{i}"), "identity-gateway", env.clone()).await);
            business.push(Gateway::start(&format!("business-{i}"), "business-gateway", env.clone()).await);
        }

        let mut cfg = gateway_router::Config::default();
        let pool = |gws: &[Gateway]| {
            gateway_router::config::Pool::of(gws.iter().map(|g| g.addr.to_string()).collect())
        };
        cfg.pools.insert("identity".into(), pool(&identity));
        cfg.pools.insert("business".into(), pool(&business));
        cfg.health.interval = Duration::from_millis(200);
        cfg.health.timeout = Duration::from_millis(300);
        cfg.health.eject_base = Duration::from_millis(500);
        cfg.attempt_timeout = Duration::from_secs(2);
        // All test traffic comes from one address.
        cfg.limits.per_client_rps = 0;
        tweak(&mut cfg);
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_base = format!("http://{}", admin.local_addr().unwrap());
        let router = Component::start(|listener, shutdown| {
            gateway_router::serve_with_admin(cfg, listener, Some(admin), shutdown)
        })
        .await
        .unwrap();
        let base = format!("http://{}", router.addr);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let chaos = Self { _redis: redis, services, identity, business, router, http, base, admin_base };
        assert!(
            chaos.wait_healthy("identity", 2).await && chaos.wait_healthy("business", 2).await,
            "gateways never became healthy"
        );
        chaos
    }

    /// `/mesh/status` of the router.
    pub(crate) async fn status(&self) -> Value {
        self.http.get(format!("{}/mesh/status", self.admin_base)).send().await.unwrap().json().await.unwrap()
    }

    /// Whether `addr` of `pool` is healthy in the router's view.
    pub(crate) async fn instance_healthy(&self, pool: &str, addr: SocketAddr) -> Option<bool> {
        let status = self.status().await;
        let pool = status["pools"].as_array()?.iter().find(|p| p["name"] == pool)?.clone();
        pool["instances"]
            .as_array()?
            .iter()
            .find(|i| i["addr"] == addr.to_string())
            .map(|i| i["healthy"] == true)
    }

    /// Waits (at most 10 s) until `pool` has `n` healthy instances.
    pub(crate) async fn wait_healthy(&self, pool: &str, n: u64) -> bool {
        wait_until(Duration::from_secs(10), || async move {
            let status = self.status().await;
            status["pools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == pool && p["healthy_instances"] == n)
        })
        .await
    }

    /// Like [`Chaos::wait_healthy`], sending a request to the pool meanwhile so passive
    /// ejection has something to act on.
    pub(crate) async fn wait_healthy_after_traffic(&self, pool: &str, n: u64) -> bool {
        let path = if pool == "identity" { "/v1/quota" } else { "/v1/articles" };
        wait_until(Duration::from_secs(10), || async move {
            let _ = self.http.get(format!("{}{path}", self.base)).send().await;
            let status = self.status().await;
            status["pools"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == pool && p["healthy_instances"] == n)
        })
        .await
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        self.api().call(method, path, token, body, headers).await
    }

    /// Registers and logs in `email`: its access token.
    pub(crate) async fn token(&self, email: &str) -> String {
        self.api().token(email).await
    }

    /// An article with plenty of stock, created by the admin.
    pub(crate) async fn article(&self) -> String {
        self.api().article().await
    }

    fn api(&self) -> Api<'_> {
        Api { http: &self.http, base: &self.base }
    }
}

/// The public API through a router at `base`: what every harness calls it with.
pub(crate) struct Api<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) base: &'a str,
}

impl Api<'_> {
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Registers and logs in `email`: its access token.
    pub(crate) async fn token(&self, email: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/register",
                None,
                Some(json!({"email": email, "password": PASSWORD, "display_name": "C"})),
                &[],
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
                &[],
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An article with plenty of stock, created by the admin.
    pub(crate) async fn article(&self) -> String {
        let admin = self.token(ADMIN_EMAIL).await;
        self.article_by(&admin, "Load", 1, 1_000_000).await
    }

    /// An article created by `admin` (a token with the admin role): its id.
    pub(crate) async fn article_by(&self, admin: &str, title: &str, price_cents: u64, stock: u64) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/articles",
                Some(admin),
                Some(json!({"title": title, "price_cents": price_cents, "stock": stock})),
                &[],
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

/// One request of the mixed load: identity GETs, business GETs and idempotency-keyed POSTs.
pub(crate) async fn mixed_request(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    article: &str,
    n: u64,
) -> (&'static str, u16) {
    let (label, request) = match n % 4 {
        0 => (
            "POST /v1/orders",
            http.post(format!("{base}/v1/orders"))
                .header("idempotency-key", format!("load-{n}"))
                .json(&json!({"items": [{"article_id": article, "quantity": 1}]})),
        ),
        1 => ("GET /v1/users/me", http.get(format!("{base}/v1/users/me"))),
        2 => ("GET /v1/quota", http.get(format!("{base}/v1/quota"))),
        _ => ("GET /v1/articles", http.get(format!("{base}/v1/articles?limit=5"))),
    };
    let status = match request.bearer_auth(token).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    };
    (label, status)
}

/// Sends `signal` to `pid` after `delay` (the chaos schedule), then waits (at most 5 s) until the
/// router whose admin listener is `base` shows `victim` unhealthy; the time that took, if it did.
pub(crate) fn signal_later_and_time_ejection(
    http: reqwest::Client,
    base: String,
    pid: u32,
    signal: &'static str,
    delay: Duration,
    victim: SocketAddr,
) -> tokio::task::JoinHandle<Option<Duration>> {
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
        let signalled = std::time::Instant::now();
        let url = format!("{base}/mesh/status");
        let ejected = wait_until(Duration::from_secs(5), || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let status: Value = http.get(url).send().await.unwrap().json().await.unwrap();
                status["pools"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|p| p["instances"].as_array().unwrap().iter())
                    .any(|i| i["addr"] == victim.to_string() && i["healthy"] == false)
            }
        })
        .await;
        ejected.then(|| signalled.elapsed())
    })
}
