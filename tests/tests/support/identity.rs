//! The identity half of the mesh as real processes, for the attack tests on logins: auth, user
//! and quota services and identity gateways, each its own binary, over one real Redis. No
//! router: clients call the gateways directly, each from a loopback address of its own
//! (`127.x.y.z`), which a gateway (trusting loopback, with no `X-Forwarded-For`) takes for the
//! client's address.

use std::net::IpAddr;
use std::time::Duration;

use mesh_tests::process::{ServiceProcess, binary};
use mesh_tests::{RedisServer, unique_prefix, wait_until};
use serde_json::{Value, json};

use super::PASSWORD;

pub(crate) struct IdentityMesh {
    pub(crate) _redis: RedisServer,
    pub(crate) auth: Vec<ServiceProcess>,
    pub(crate) _services: Vec<ServiceProcess>,
    pub(crate) gateways: Vec<ServiceProcess>,
}

/// What differs between the attack tests.
pub(crate) struct Shape<'a> {
    pub(crate) auth_replicas: usize,
    pub(crate) gateways: usize,
    /// Extra environment of every auth process (e.g. a cheap hash cost).
    pub(crate) auth_env: &'a [(&'a str, &'a str)],
    /// Extra environment of every gateway process (e.g. throttle limits).
    pub(crate) gateway_env: &'a [(&'a str, &'a str)],
}

/// One answer, read whole.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl IdentityMesh {
    pub(crate) async fn start(shape: Shape<'_>) -> Self {
        let redis = RedisServer::start().await.unwrap();
        let (url, prefix) = (redis.url(), unique_prefix("identity-abuse"));
        let common = [
            ("REDIS_URL", url.as_str()),
            ("MESH_STORE__KEY_PREFIX", prefix.as_str()),
            ("MESH_LOG", "warn,mesh_core::process=info"),
        ];
        let start = |name: &str, extra: &[(&str, &str)]| {
            let env: Vec<(&str, &str)> = common.iter().chain(extra).copied().collect();
            ServiceProcess::start(binary(name), &env).expect("process starts")
        };
        let auth: Vec<ServiceProcess> =
            (0..shape.auth_replicas).map(|_| start("auth-service", shape.auth_env)).collect();
        let services = vec![
            start("user-service", &[]),
            // Probes and logins are metered; the default plan would run out mid-test.
            start("quota-service", &[("MESH_PLANS__FREE__LIMIT", "10000000")]),
        ];
        let endpoints =
            |ps: &[ServiceProcess]| ps.iter().map(|p| format!("http://{}", p.addr)).collect::<Vec<_>>();
        let auth_endpoints = endpoints(&auth).join(",");
        let (user, quota) = (endpoints(&services[..1]).join(","), endpoints(&services[1..]).join(","));
        let mut env = vec![
            ("MESH_SERVICES__AUTH__ENDPOINTS", auth_endpoints.as_str()),
            ("MESH_SERVICES__USER__ENDPOINTS", user.as_str()),
            ("MESH_SERVICES__QUOTA__ENDPOINTS", quota.as_str()),
        ];
        env.extend_from_slice(shape.gateway_env);
        let gateways: Vec<ServiceProcess> =
            (0..shape.gateways).map(|_| start("identity-gateway", &env)).collect();
        let mesh = Self { _redis: redis, auth, _services: services, gateways };
        let http = client_from("127.0.0.1".parse().unwrap());
        for i in 0..mesh.gateways.len() {
            let url = format!("{}/.well-known/jwks.json", mesh.base(i));
            let ready = wait_until(Duration::from_secs(30), || {
                let (http, url) = (http.clone(), url.clone());
                async move { http.get(url).send().await.is_ok_and(|r| r.status().is_success()) }
            })
            .await;
            assert!(ready, "gateway {i} never answered");
        }
        mesh
    }

    /// `http://<gateway i>`.
    pub(crate) fn base(&self, i: usize) -> String {
        format!("http://{}", self.gateways[i].addr)
    }

    /// Registers `email` through gateway `gw` from `from`.
    pub(crate) async fn register(&self, gw: usize, from: &reqwest::Client, email: &str) {
        let body = json!({"email": email, "password": PASSWORD, "display_name": "T"});
        let reply = send(from.post(format!("{}/v1/auth/register", self.base(gw))).json(&body)).await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }

    /// A login through gateway `gw` from `from`.
    pub(crate) async fn login(
        &self,
        gw: usize,
        from: &reqwest::Client,
        email: &str,
        password: &str,
    ) -> Reply {
        let body = json!({"email": email, "password": password});
        send(from.post(format!("{}/v1/auth/login", self.base(gw))).json(&body)).await
    }
}

/// An HTTP client whose connections come from `local` (any `127.x.y.z` on Linux's loopback).
pub(crate) fn client_from(local: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local)
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(4)
        .build()
        .unwrap()
}

pub(crate) async fn send(request: reqwest::RequestBuilder) -> Reply {
    let res = request.send().await.expect("request answered");
    let status = res.status().as_u16();
    let header = |name| res.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let retry_after = header("retry-after").and_then(|v| v.parse().ok());
    let content_type = header("content-type").unwrap_or_default();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, retry_after, content_type, body }
}

/// `VmRSS` of process `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time (user + system) process `pid` has used so far.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces), from field 3 on: utime is 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux the mesh runs on.
    Duration::from_millis(ticks * 10)
}

/// The `q`-quantile of `samples` (sorted here).
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

/// Time since `t`, in ms, for figures.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
