//! What one password hash costs and how many may run at once: the `password_hash` and `hashing`
//! sections of the configuration.
//!
//! Their own module, below both [`config`](crate::config) (which holds them) and
//! [`passwords`](crate::passwords) (which runs them), so neither of those imports the other.

use std::time::Duration;

use argon2::Params;
use serde::{Deserialize, Serialize};

/// argon2id parameters for new password hashes. Stored hashes carry their own parameters, so
/// raising these only affects passwords set from then on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordHashConfig {
    /// Memory in KiB. Default: 19456.
    pub memory_kib: u32,
    /// Passes over the memory. Default: 2.
    pub iterations: u32,
    /// Lanes. Default: 1.
    pub parallelism: u32,
}

/// The bound on password hashing. Each argon2id hash holds `password_hash.memory_kib` of memory
/// and a core for its whole run, so unbounded concurrent logins are unbounded memory (a login
/// flood once took a mesh to 7 GiB). Hashes run on their own threads, at most `max_concurrent`
/// at once; a call waits at most `max_wait` for one (never past its own gRPC deadline), then is
/// refused with RESOURCE_EXHAUSTED, which the gateway answers 503 + `Retry-After`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HashingConfig {
    /// Hashes at once; `0` derives it: `min(cores, memory_budget_mib / password_hash memory)`,
    /// at least 1. More than the cores only adds waiting inside the hash. Default: 0.
    pub max_concurrent: usize,
    /// Memory all concurrent hashes may hold together, for the derived `max_concurrent`.
    /// Default: 256 (MiB), 13 hashes at the default cost.
    pub memory_budget_mib: u64,
    /// Longest wait for a free hashing slot before the call is refused. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub max_wait: Duration,
    /// Nice value of the hashing threads (Linux), 0..=19: under contention a hash yields the CPU
    /// to the latency-bound calls of this process and whatever shares its cores; an idle machine
    /// still gives hashing all of it. `0` runs them like every other thread. Default: 10.
    pub nice: i32,
}

// === impl PasswordHashConfig ===

impl Default for PasswordHashConfig {
    fn default() -> Self {
        Self { memory_kib: 19456, iterations: 2, parallelism: 1 }
    }
}

impl PasswordHashConfig {
    /// The argon2id parameters, refused when argon2 would refuse them.
    pub fn params(self) -> anyhow::Result<Params> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| anyhow::anyhow!("password_hash: {e}"))
    }
}

// === impl HashingConfig ===

impl Default for HashingConfig {
    fn default() -> Self {
        Self { max_concurrent: 0, memory_budget_mib: 256, max_wait: Duration::from_secs(1), nice: 10 }
    }
}

impl HashingConfig {
    /// The number of hashes allowed at once with `cost`, on a machine with `cores`.
    pub fn permits(&self, cost: PasswordHashConfig, cores: usize) -> usize {
        if self.max_concurrent > 0 {
            return self.max_concurrent;
        }
        let by_memory = (self.memory_budget_mib * 1024 / u64::from(cost.memory_kib.max(1))) as usize;
        cores.min(by_memory).max(1)
    }

    /// Refuses a bound that could never admit a hash, or a nice value out of range.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_concurrent > 0 || self.memory_budget_mib > 0,
            "hashing: set max_concurrent or a memory_budget_mib above 0"
        );
        anyhow::ensure!((0..=19).contains(&self.nice), "hashing.nice must be within 0..=19");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_slots_follow_memory_and_cores() {
        let default = HashingConfig::default();
        let cost = PasswordHashConfig::default();
        // 256 MiB / 19 MiB = 13 hashes' memory; the cores bound it first on small machines.
        assert_eq!(default.permits(cost, 2), 2);
        assert_eq!(default.permits(cost, 64), 13);
        let heavy = PasswordHashConfig { memory_kib: 512 * 1024, ..cost };
        assert_eq!(default.permits(heavy, 8), 1, "never zero");
        assert_eq!(HashingConfig { max_concurrent: 5, ..default }.permits(cost, 2), 5);
    }

    #[test]
    fn parameters_argon2_refuses_are_refused_at_start() {
        assert!(PasswordHashConfig { memory_kib: 1, iterations: 1, parallelism: 1 }.params().is_err());
        assert!(PasswordHashConfig::default().params().is_ok());
        let never = HashingConfig { max_concurrent: 0, memory_budget_mib: 0, ..HashingConfig::default() };
        assert!(never.validate().is_err());
        assert!(HashingConfig { nice: 20, ..HashingConfig::default() }.validate().is_err());
    }
}
