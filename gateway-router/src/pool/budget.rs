//! The retry budget: retries as a share of recent requests plus a small floor per second, so
//! retries never multiply an outage.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use super::Pool;
use crate::config::RetryConfig;

/// The budget `retry` describes.
pub(super) fn of(retry: &RetryConfig) -> TpsBudget {
    // TpsBudget turns the ratio into whole deposits per retry as `(1.0 / ratio) as isize`,
    // and in f32 `1.0 / 0.2` is 4.9999995, which truncates to 4 (25%, not 20%). A
    // hair less than the ratio makes the division land on the intended whole number.
    TpsBudget::new(
        retry.budget_window.clamp(Duration::from_secs(1), Duration::from_secs(60)),
        retry.budget_min_per_second,
        retry.budget_ratio * 0.999_99,
    )
}

// === impl Pool ===

impl Pool {
    /// Counts a request towards the retry budget.
    pub fn deposit(&self) {
        self.budget.deposit();
    }

    /// Takes one retry from the budget; false when it is spent.
    pub fn withdraw(&self) -> bool {
        let granted = self.budget.withdraw();
        if granted {
            self.retries.fetch_add(1, Ordering::Relaxed);
        } else {
            self.retries_refused.fetch_add(1, Ordering::Relaxed);
        }
        metrics::counter!("router_retries_total", "pool" => self.name.clone(), "granted" => granted.to_string())
            .increment(1);
        granted
    }
}
