//! Configuration of the analytics service.

use crate::live::LiveConfig;

mesh_core::service_config! {
    /// The analytics service: event counts kept in `store`, live events.
    pub struct Config {
        listen: 50056,
        admin_listen: 9056,
        /// Live events (`WatchEvents`).
        pub live: LiveConfig = LiveConfig::default(),
        /// Longest an event's properties may be, as JSON; a longer event is refused with
        /// `OUT_OF_RANGE` (413 at the gateway). Bounds what one event stores in its owner's live log
        /// (the per-property rules alone allow 32 × 512 characters, up to ~70 KiB). Default: 4096.
        pub max_properties_bytes: usize = 4096,
    }
}

/// Keys whose environment value is a comma-separated list: none.
pub const LIST_KEYS: &[&str] = &[];

/// Nothing to check beyond the types.
impl mesh_core::config::Validate for Config {}

#[cfg(test)]
mod tests {
    use mesh_core::config::Sources;

    use super::*;

    #[test]
    fn stored_bounds_have_their_documented_defaults_and_are_tunable() {
        let cfg: Config = Sources::default().load().unwrap();
        assert_eq!((cfg.listen.port(), cfg.admin_listen.port()), (50056, 9056));
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
