//! Configuration of the quota service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_core::grpc::ServerConfig;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener. Default: `127.0.0.1:50053`.
    pub listen: SocketAddr,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`). Default: `127.0.0.1:9053`.
    pub admin_listen: SocketAddr,
    pub server: ServerConfig,
    pub store: StoreConfig,
    /// Plan of a principal that was never given one. Default: `free`.
    pub default_plan: String,
    /// Plans by name. Default: `free` (1000 per hour) and `pro` (100000 per hour).
    pub plans: BTreeMap<String, Plan>,
}

/// A plan: how many requests fit in one window.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub limit: u64,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        let hour = Duration::from_secs(3600);
        Self {
            listen: ([127, 0, 0, 1], 50053).into(),
            admin_listen: ([127, 0, 0, 1], 9053).into(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            default_plan: "free".into(),
            plans: BTreeMap::from([
                ("free".into(), Plan { limit: 1000, window: hour }),
                ("pro".into(), Plan { limit: 100_000, window: hour }),
            ]),
        }
    }
}

impl Config {
    /// Refuses a configuration that could not serve: no default plan, or an empty window.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.plans.contains_key(&self.default_plan),
            "default_plan {:?} is not one of the plans {:?}",
            self.default_plan,
            self.plans.keys().collect::<Vec<_>>()
        );
        for (name, plan) in &self.plans {
            anyhow::ensure!(plan.window.as_secs() >= 1, "plans.{name}.window must be at least 1s");
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
