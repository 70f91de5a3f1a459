//! The metrics of every answer, registered once per pool: the `metrics` macros build a key from
//! the name and labels (allocating the label values) and look it up in the recorder on every
//! call, which is more work than the count itself. Each answer also goes to the pool's
//! [`History`], the status page's charts.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::StatusCode;
use metrics::{Counter, Histogram};

use crate::config::StatusConfig;
use crate::history::History;

/// The answer counters and latency histogram of one pool (or of the answers given before any
/// pool was chosen, labelled `none`).
pub struct Counters {
    pool: String,
    /// `router_requests_total{pool, status}`, by status code (100..=999), registered on first use.
    by_status: Box<[OnceLock<Counter>]>,
    /// `router_request_duration_seconds{pool}`.
    duration: Histogram,
    /// `router_shed_total{pool}`.
    pub shed: Counter,
    /// `router_no_healthy_instance_total{pool}`.
    pub no_healthy_instance: Counter,
    /// The last `status.history` of answers, for the status page.
    pub history: History,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl Counters {
    pub fn new(pool: &str, status: &StatusConfig) -> Self {
        Self {
            pool: pool.to_owned(),
            by_status: (100..=999).map(|_| OnceLock::new()).collect(),
            duration: metrics::histogram!("router_request_duration_seconds", "pool" => pool.to_owned()),
            shed: metrics::counter!("router_shed_total", "pool" => pool.to_owned()),
            no_healthy_instance: metrics::counter!("router_no_healthy_instance_total", "pool" => pool.to_owned()),
            history: History::new(status.history, status.bucket),
        }
    }

    /// Counts one answer with `status`, `elapsed` after the request arrived.
    pub fn answered(&self, status: StatusCode, elapsed: Duration) {
        // A `StatusCode` is always within 100..=999.
        let counter = self.by_status[usize::from(status.as_u16() - 100)].get_or_init(|| {
            metrics::counter!(
                "router_requests_total",
                "pool" => self.pool.clone(),
                "status" => status.as_str().to_owned()
            )
        });
        counter.increment(1);
        self.duration.record(elapsed.as_secs_f64());
        self.history.record(Instant::now(), status.as_u16(), elapsed);
    }
}
