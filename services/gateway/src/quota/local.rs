//! The approximate limit a gateway keeps per principal while the quota service cannot answer
//! (docs/ARCHITECTURE.md §5).
//!
//! While the service answers, each of its answers is [`observe`](LocalQuota::observe)d, so the
//! local count takes over where the service left off: same plan, limit, window and count. A
//! principal this process has not seen starts from its last known quota status in the store
//! (remembered by `GET /v1/quota`), else from the configured default plan.
//!
//! Approximate by design: each gateway process counts on its own, so with N replicas a principal
//! may get up to N times its remaining quota during an outage; and nothing counted here is sent
//! to the quota service afterwards. Counting in Redis from the gateway instead would rebuild the
//! quota service, and fail when Redis does. Memory is bounded by `max_principals`.

use std::collections::HashMap;
use std::sync::Mutex;

use mesh_proto::quota::QuotaStatus;

use super::KnownQuota;
use crate::config::LocalQuotaConfig;

/// One principal's window as this process sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Window {
    plan: String,
    limit: u64,
    window_seconds: u64,
    used: u64,
    /// Unix seconds when the window ends.
    reset_at: i64,
}

/// Per-principal fixed windows in this process's memory.
#[derive(Debug)]
pub struct LocalQuota {
    windows: Mutex<HashMap<String, Window>>,
    default: LocalQuotaConfig,
}

// === impl LocalQuota ===

impl LocalQuota {
    pub fn new(default: LocalQuotaConfig) -> Self {
        Self { windows: Mutex::default(), default }
    }

    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this process has a window for `principal` (then no seed is needed).
    pub fn knows(&self, principal: &str) -> bool {
        self.windows().contains_key(principal)
    }

    /// Adopts the quota service's answer as the local view of `principal`.
    pub fn observe(&self, principal: &str, status: &QuotaStatus) {
        let window = Window {
            plan: status.plan.clone(),
            limit: status.limit,
            window_seconds: status.window_seconds,
            used: status.used,
            reset_at: status.reset_at,
        };
        let mut windows = self.windows();
        if let Some(existing) = windows.get_mut(principal) {
            *existing = window;
            return;
        }
        self.make_room(&mut windows, mesh_core::ids::unix_now());
        windows.insert(principal.to_owned(), window);
    }

    /// Counts one request of `principal` at `now` (unix seconds) and reports the window as the
    /// quota service would. `seed` is its last known status, used when this process has none.
    pub fn consume(&self, principal: &str, seed: Option<KnownQuota>, now: i64) -> QuotaStatus {
        let mut windows = self.windows();
        if !windows.contains_key(principal) {
            self.make_room(&mut windows, now);
            windows.insert(principal.to_owned(), self.start(seed, now));
        }
        let window = windows.get_mut(principal).expect("inserted above");
        if window.reset_at <= now {
            window.used = 0;
            window.reset_at = now + window.window_seconds.max(1) as i64;
        }
        let allowed = window.used < window.limit;
        if allowed {
            window.used += 1;
        }
        QuotaStatus {
            principal: principal.to_owned(),
            plan: window.plan.clone(),
            limit: window.limit,
            used: window.used,
            remaining: window.limit.saturating_sub(window.used),
            reset_at: window.reset_at,
            allowed,
            window_seconds: window.window_seconds,
        }
    }

    /// The first window of a principal this process has not seen.
    fn start(&self, seed: Option<KnownQuota>, now: i64) -> Window {
        match seed {
            Some(known) if known.limit > 0 => {
                let window_seconds = if known.window_seconds > 0 {
                    known.window_seconds
                } else {
                    self.default.window.as_secs().max(1)
                };
                // The count still applies if its window has not ended; else a fresh window.
                let (used, reset_at) = if known.reset_at > now {
                    (known.used, known.reset_at)
                } else {
                    (0, now + window_seconds as i64)
                };
                Window { plan: known.plan, limit: known.limit, window_seconds, used, reset_at }
            }
            _ => {
                let window_seconds = self.default.window.as_secs().max(1);
                Window {
                    plan: "local".into(),
                    limit: self.default.limit,
                    window_seconds,
                    used: 0,
                    reset_at: now + window_seconds as i64,
                }
            }
        }
    }

    /// Keeps the map within `max_principals`: ended windows go first, then any.
    fn make_room(&self, windows: &mut HashMap<String, Window>, now: i64) {
        let max = self.default.max_principals.max(1);
        if windows.len() < max {
            return;
        }
        windows.retain(|_, w| w.reset_at > now);
        while windows.len() >= max {
            let Some(victim) = windows.keys().next().cloned() else { break };
            windows.remove(&victim);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn quota(limit: u64, max_principals: usize) -> LocalQuota {
        LocalQuota::new(LocalQuotaConfig { limit, window: Duration::from_secs(60), max_principals })
    }

    fn known(limit: u64, used: u64, reset_at: i64) -> KnownQuota {
        KnownQuota {
            plan: "pro".into(),
            limit,
            used,
            remaining: limit - used,
            reset_at,
            window_seconds: 3600,
        }
    }

    #[test]
    fn an_unknown_principal_gets_the_default_limit_per_window() {
        let q = quota(2, 10);
        let first = q.consume("u1", None, 1000);
        assert!(first.allowed);
        assert_eq!((first.plan.as_str(), first.limit, first.used, first.remaining), ("local", 2, 1, 1));
        assert_eq!(first.reset_at, 1060);
        assert!(q.consume("u1", None, 1001).allowed);
        let refused = q.consume("u1", None, 1002);
        assert!(!refused.allowed);
        assert_eq!((refused.used, refused.remaining), (2, 0));
        // Another principal has a window of its own; a new window starts at reset_at.
        assert!(q.consume("u2", None, 1002).allowed);
        let next = q.consume("u1", None, 1060);
        assert!(next.allowed);
        assert_eq!((next.used, next.reset_at), (1, 1120));
    }

    #[test]
    fn counting_continues_from_the_last_known_status() {
        let q = quota(1000, 10);
        let seeded = q.consume("u1", Some(known(5, 3, 2000)), 1000);
        assert_eq!((seeded.plan.as_str(), seeded.limit, seeded.used, seeded.reset_at), ("pro", 5, 4, 2000));
        assert!(q.consume("u1", None, 1001).allowed);
        assert!(!q.consume("u1", None, 1002).allowed, "5 of 5 used");
        // A seed whose window has ended starts a fresh window of the same plan.
        let fresh = q.consume("u2", Some(known(5, 5, 900)), 1000);
        assert_eq!((fresh.used, fresh.reset_at, fresh.window_seconds), (1, 4600, 3600));
    }

    #[test]
    fn the_services_answers_are_adopted() {
        let q = quota(1000, 10);
        let status = QuotaStatus {
            principal: "u1".into(),
            plan: "free".into(),
            limit: 3,
            used: 2,
            remaining: 1,
            reset_at: i64::MAX / 2,
            allowed: true,
            window_seconds: 3600,
        };
        q.observe("u1", &status);
        assert!(q.knows("u1"));
        assert!(q.consume("u1", Some(known(100, 0, i64::MAX / 2)), 1000).allowed, "the seed is ignored");
        assert!(!q.consume("u1", None, 1000).allowed, "3 of 3 used");
    }

    #[test]
    fn memory_stays_bounded() {
        let q = quota(10, 3);
        for i in 0..10 {
            q.consume(&format!("u{i}"), None, 1000);
        }
        assert!(q.windows().len() <= 3);
        assert!(q.knows("u9"), "the newest principal is kept");
    }
}
