//! A harness whose gRPC services are real processes (two replicas each, on a real Redis) so
//! tests can SIGKILL or SIGSTOP them; gateways and the router run in this process.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_core::client::ClientConfig;
use mesh_tests::process::{ServiceProcess, binary};
use mesh_tests::{Component, RedisServer, unique_prefix};
use meshctl::Kind;

use super::chaos::mixed_request;

pub(crate) struct ServiceChaos {
    pub(crate) _redis: RedisServer,
    pub(crate) services: BTreeMap<(Kind, u16), ServiceProcess>,
    pub(crate) _gateways: Vec<Component>,
    pub(crate) router: Component,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
}

impl ServiceChaos {
    /// Starts everything; `client` adjusts every gateway's service client config.
    pub(crate) async fn start(client: impl Fn(&mut ClientConfig)) -> Self {
        Self::start_with(client, |_| {}).await
    }

    /// Like [`ServiceChaos::start`]; `gateway` adjusts both gateways' config last.
    pub(crate) async fn start_with(
        client: impl Fn(&mut ClientConfig),
        gateway: impl Fn(&mut gateway::Config),
    ) -> Self {
        let redis = RedisServer::start().await.unwrap();
        let prefix = unique_prefix("svc-chaos");
        let url = redis.url();
        let mut services = BTreeMap::new();
        // Articles before orders: orders needs their addresses.
        for kind in [Kind::Auth, Kind::User, Kind::Quota, Kind::Articles, Kind::Analytics, Kind::Orders] {
            let articles: Vec<String> = services
                .iter()
                .filter(|((k, _), _)| *k == Kind::Articles)
                .map(|(_, p): (_, &ServiceProcess)| format!("http://{}", p.addr))
                .collect();
            let articles = articles.join(",");
            for replica in 1..=2u16 {
                let env = [
                    ("REDIS_URL", url.as_str()),
                    ("MESH_STORE__KEY_PREFIX", prefix.as_str()),
                    ("MESH_LOG", "warn,mesh_core::process=info"),
                    ("MESH_ADMIN_EMAILS", super::ADMIN_EMAIL),
                    ("MESH_PASSWORD_HASH__MEMORY_KIB", "256"),
                    ("MESH_PASSWORD_HASH__ITERATIONS", "1"),
                    ("MESH_PLANS__FREE__LIMIT", "10000000"),
                    ("MESH_ARTICLES__ENDPOINTS", articles.as_str()),
                ];
                let env: Vec<(&str, &str)> = env
                    .into_iter()
                    .filter(|(k, _)| match *k {
                        "MESH_ADMIN_EMAILS"
                        | "MESH_PASSWORD_HASH__MEMORY_KIB"
                        | "MESH_PASSWORD_HASH__ITERATIONS" => kind == Kind::Auth,
                        "MESH_PLANS__FREE__LIMIT" => kind == Kind::Quota,
                        "MESH_ARTICLES__ENDPOINTS" => kind == Kind::Orders,
                        _ => true,
                    })
                    .collect();
                let process =
                    ServiceProcess::start(binary(kind.binary()), &env).expect("service process starts");
                services.insert((kind, replica), process);
            }
        }
        let endpoints = |kind: Kind| -> ClientConfig {
            let mut cfg = ClientConfig::to(
                services.iter().filter(|((k, _), _)| *k == kind).map(|(_, p)| format!("http://{}", p.addr)),
            );
            client(&mut cfg);
            cfg
        };
        let mut gateways = Vec::new();
        let mut pools = BTreeMap::new();
        for domain in [gateway::Domain::Identity, gateway::Domain::Business] {
            let mut cfg = gateway::Config::for_domain(domain);
            cfg.store.redis_url = Some(url.clone());
            cfg.store.key_prefix = prefix.clone();
            cfg.services.auth = endpoints(Kind::Auth);
            cfg.services.user = endpoints(Kind::User);
            cfg.services.quota = endpoints(Kind::Quota);
            cfg.services.orders = endpoints(Kind::Orders);
            cfg.services.articles = endpoints(Kind::Articles);
            cfg.services.analytics = endpoints(Kind::Analytics);
            gateway(&mut cfg);
            let gw = Component::start(|l, s| gateway::serve(cfg, l, s)).await.unwrap();
            pools.insert(
                domain.as_str().to_owned(),
                gateway_router::config::Pool::of(vec![gw.addr.to_string()]),
            );
            gateways.push(gw);
        }
        let mut router_cfg = gateway_router::Config { pools, ..gateway_router::Config::default() };
        router_cfg.limits.per_client_rps = 0;
        let router =
            Component::start(|l, s| gateway_router::serve_with_admin(router_cfg, l, None, s)).await.unwrap();
        let base = format!("http://{}", router.addr);
        let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap();
        let ready = mesh_tests::wait_until(Duration::from_secs(20), || {
            let (http, base) = (http.clone(), base.clone());
            async move {
                let register = http.get(format!("{base}/.well-known/jwks.json")).send().await;
                register.is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
        assert!(ready, "the mesh never answered");
        Self { _redis: redis, services, _gateways: gateways, router, http, base }
    }

    pub(crate) fn process(&self, kind: Kind, replica: u16) -> &ServiceProcess {
        &self.services[&(kind, replica)]
    }

    /// Registers and logs in `email` through the router.
    pub(crate) async fn token(&self, email: &str) -> String {
        let body = serde_json::json!({"email": email, "password": super::PASSWORD, "display_name": "S"});
        let res = self.http.post(format!("{}/v1/auth/register", self.base)).json(&body).send().await.unwrap();
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        let body = serde_json::json!({"email": email, "password": super::PASSWORD});
        let res = self.http.post(format!("{}/v1/auth/login", self.base)).json(&body).send().await.unwrap();
        let tokens: serde_json::Value = res.json().await.unwrap();
        tokens["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn article(&self) -> String {
        let admin = self.token(super::ADMIN_EMAIL).await;
        let body = serde_json::json!({"title": "Load", "price_cents": 1, "stock": 1_000_000});
        let res = self
            .http
            .post(format!("{}/v1/articles", self.base))
            .bearer_auth(&admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let article: serde_json::Value = res.json().await.unwrap();
        article["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn mixed(&self, token: &str, article: &str, n: u64) -> (&'static str, u16) {
        mixed_request(&self.http, &self.base, token, article, n).await
    }
}
