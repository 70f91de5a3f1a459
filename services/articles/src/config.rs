//! Configuration of the articles service.

use std::time::Duration;

mesh_core::service_config! {
    /// The articles service: the catalogue, stock and reservations, kept in `store`.
    pub struct Config {
        listen: 50055,
        admin_listen: 9055,
        /// How long a reservation may stay `pending` (claimed, stock being taken) before its claim
        /// expires. The claim expires so that a replica dying mid-reservation does not block that
        /// reservation id forever; a reservation still taking stock after half of this gives up and
        /// returns what it took, so a live call never overlaps an expired claim. Default: 60s.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "mesh_core::config::HumanDuration")]
        pub reservation_timeout: Duration = Duration::from_secs(60),
        /// How long a settled reservation (`reserved`, `released`) is kept. It is what makes a repeat
        /// of a reservation take nothing twice, and orders repeats one only while the order's
        /// Idempotency-Key lives (24h by default, plus a queued order's wait, at most an hour by
        /// default), so a week outlives every repeat several times over; a release after that finds
        /// nothing and returns no stock. Default: 7d.
        #[serde(with = "humantime_serde")]
        #[schemars(with = "mesh_core::config::HumanDuration")]
        pub reservation_ttl: Duration = Duration::from_secs(7 * 24 * 3600),
        /// Upper bound on articles one `ListArticles` call examines while filtering by a query. A
        /// sparse query stops there with a short page and a cursor to continue from, so no call reads
        /// the whole catalogue. Default: 1000.
        pub max_scan: usize = 1000,
    }
}

/// Keys whose environment value is a comma-separated list: none.
pub const LIST_KEYS: &[&str] = &[];

impl mesh_core::config::Validate for Config {
    fn validate(&self) -> anyhow::Result<()> {
        Config::validate(self)
    }
}

impl Config {
    /// Refuses a configuration that could not serve.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.reservation_timeout >= Duration::from_secs(2),
            "reservation_timeout must be at least 2s"
        );
        anyhow::ensure!(
            self.reservation_ttl >= Duration::from_secs(48 * 3600),
            "reservation_ttl must be at least 48h, longer than any repeat of a reservation"
        );
        anyhow::ensure!(self.max_scan >= 1, "max_scan must be at least 1");
        Ok(())
    }
}
