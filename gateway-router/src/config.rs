//! Configuration of the router: the classification table and the gateway pools.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::process::Listens;
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
    /// `host:port` of each instance.
    pub instances: Vec<String>,
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
                ("identity".into(), Pool { instances: vec!["127.0.0.1:8081".into()] }),
                ("business".into(), Pool { instances: vec!["127.0.0.1:8082".into()] }),
            ]),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Every rule must name a configured, non-empty pool.
    pub fn validate(&self) -> anyhow::Result<()> {
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
