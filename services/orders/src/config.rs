//! Configuration of the orders service.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::client::ClientConfig;
use mesh_core::grpc::ServerConfig;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener. Default: `127.0.0.1:50054`.
    pub listen: SocketAddr,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`). Default: `127.0.0.1:9054`.
    pub admin_listen: SocketAddr,
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// The articles service's replicas. Default: `http://127.0.0.1:50055`, 1s connect, 5s deadline.
    pub articles: ClientConfig,
    /// How long an Idempotency-Key is remembered after its first use. Within it, the same key and
    /// items answer the same order; after it, the key is free again (as with most public APIs,
    /// keys are meant for retries, not as permanent names). Default: 24h.
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 50054).into(),
            admin_listen: ([127, 0, 0, 1], 9054).into(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            articles: ClientConfig::to(["http://127.0.0.1:50055"]),
            idempotency_ttl: Duration::from_secs(24 * 3600),
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
}
