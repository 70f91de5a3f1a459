//! Configuration of the quota service.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

const HOUR: Duration = Duration::from_secs(3600);

mesh_core::service_config! {
    /// The quota service: plans, and each principal's usage kept in `store`.
    pub struct Config {
        listen: 50053,
        admin_listen: 9053,
        /// Plan of a principal that was never given one. Default: `free`.
        pub default_plan: String = "free".into(),
        /// Plans by name. Default: `free` (1000 per hour) and `pro` (100000 per hour).
        pub plans: BTreeMap<String, Plan> = BTreeMap::from([
            ("free".into(), Plan { limit: 1000, window: HOUR }),
            ("pro".into(), Plan { limit: 100_000, window: HOUR }),
        ]),
    }
}

/// Keys whose environment value is a comma-separated list: none.
pub const LIST_KEYS: &[&str] = &[];

impl mesh_core::config::Validate for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Config::validate(self)
    }
}

/// A plan: how many requests fit in one window.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Requests a principal on this plan may make per window.
    pub limit: u64,
    /// The window the limit counts over, e.g. `1h`.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub window: Duration,
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
