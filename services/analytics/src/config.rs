//! Configuration of the analytics service.

use std::net::SocketAddr;

use mesh_core::grpc::ServerConfig;
use mesh_core::process::Listens;
use mesh_core::store::StoreConfig;
use serde::{Deserialize, Serialize};

use crate::live::LiveConfig;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// gRPC listener. Default: `127.0.0.1:50056`.
    pub listen: SocketAddr,
    /// Admin HTTP listener (`/healthz`, `/readyz`, `/metrics`). Default: `127.0.0.1:9056`.
    pub admin_listen: SocketAddr,
    pub server: ServerConfig,
    /// Where event counts live; every replica must share it. Default: memory (one process only).
    pub store: StoreConfig,
    /// Live events (`WatchEvents`).
    pub live: LiveConfig,
    /// Longest an event's properties may be, as JSON; a longer event is refused with
    /// `OUT_OF_RANGE` (413 at the gateway). Bounds what one event stores in its owner's live log
    /// (the per-property rules alone allow 32 × 512 characters, up to ~70 KiB). Default: 4096.
    pub max_properties_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 50056).into(),
            admin_listen: ([127, 0, 0, 1], 9056).into(),
            server: ServerConfig::default(),
            store: StoreConfig::default(),
            live: LiveConfig::default(),
            max_properties_bytes: 4096,
        }
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
    use mesh_core::config::Sources;

    use super::*;

    #[test]
    fn defaults_are_the_documented_ports_and_env_overrides_apply() {
        let cfg: Config = Sources::default().load().unwrap();
        assert_eq!(cfg.listen.port(), 50056);
        assert_eq!(cfg.admin_listen.port(), 9056);
        let cfg: Config = Sources::from_env([("REDIS_URL", "redis://r:6379")]).load().unwrap();
        assert_eq!(cfg.store.redis_url.as_deref(), Some("redis://r:6379"));
        assert!(Sources::from_env([("MESH_LISTN", "x")]).load::<Config>().is_err());
    }

    #[test]
    fn stored_bounds_have_their_documented_defaults_and_are_tunable() {
        let cfg: Config = Sources::default().load().unwrap();
        assert_eq!(cfg.max_properties_bytes, 4096);
        let bounds = cfg.live.bounds();
        assert_eq!((bounds.max_len, bounds.max_bytes), (1000, 256 * 1024));
        assert_eq!(bounds.ttl, std::time::Duration::from_secs(3600));
        let cfg: Config = Sources::from_env([
            ("MESH_MAX_PROPERTIES_BYTES", "1024"),
            ("MESH_LIVE__LOG_MAX_BYTES", "65536"),
            ("MESH_LIVE__LOG_TTL", "10m"),
        ])
        .load()
        .unwrap();
        assert_eq!((cfg.max_properties_bytes, cfg.live.log_max_bytes), (1024, 65536));
        assert_eq!(cfg.live.log_ttl, std::time::Duration::from_secs(600));
    }
}
