//! Per-client rate limiting at the door.
//!
//! Locally a token bucket per client address (governor's keyed GCRA limiter). With a Redis
//! store configured, replicas share the count instead: a fixed one-second window per address
//! in Redis, which is coarser but agrees across replicas. The shared count goes through the
//! store tier that fails open ([`FailOpen`]): a Redis error or a slow answer lets the request
//! through, and the tier then rests, so an outage costs one short timeout per second on the hot
//! path rather than one per request, and never turns a cache outage into an API outage.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mesh_core::store::{Bounded, FailOpen, Store};

use crate::config::ClientLimits;

pub enum Limiter {
    Off,
    Local(DefaultKeyedRateLimiter<IpAddr>),
    Shared { tier: FailOpen, per_second: u32 },
}

impl Limiter {
    pub fn new(limits: &ClientLimits, store: Option<Store>) -> Self {
        let Some(rate) = NonZeroU32::new(limits.per_client_rps) else { return Self::Off };
        match store {
            Some(store) => Self::Shared {
                // On the hot path of every request: a short bound.
                tier: store.fail_open("rate-limit").with_timeout(Duration::from_millis(100)),
                per_second: limits.per_client_rps + limits.per_client_burst,
            },
            None => {
                let burst =
                    NonZeroU32::new(limits.per_client_burst.max(limits.per_client_rps)).unwrap_or(rate);
                Self::Local(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
            }
        }
    }

    /// Whether `client` may send one more request now.
    pub async fn allow(&self, client: IpAddr) -> bool {
        match self {
            Self::Off => true,
            Self::Local(limiter) => limiter.check_key(&client).is_ok(),
            Self::Shared { tier, per_second } => {
                let window = mesh_core::ids::unix_now();
                let key = format!("router:rate:{client}:{window}");
                let counted = tier.store().add_bounded(
                    &key,
                    1,
                    0,
                    i64::from(*per_second),
                    Some(Duration::from_secs(2)),
                );
                // No answer from the store: let the request through (fail open).
                !matches!(tier.run("count", counted).await, Some(Bounded::Refused(_)))
            }
        }
    }

    /// Whether [`Limiter::allow`] may log (the shared limit's store failing open).
    pub fn may_log(&self) -> bool {
        matches!(self, Self::Shared { .. })
    }

    /// Forgets idle clients so the local table stays bounded.
    pub fn housekeep(&self) {
        if let Self::Local(limiter) = self {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_past_its_burst_is_refused_and_others_are_not() {
        let limits = ClientLimits { per_client_rps: 1, per_client_burst: 3, ..ClientLimits::default() };
        let limiter = Limiter::new(&limits, None);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let allowed = futures_util::future::join_all((0..10).map(|_| limiter.allow(a))).await;
        assert_eq!(allowed.iter().filter(|x| **x).count(), 3);
        assert!(limiter.allow(b).await);
    }

    #[tokio::test]
    async fn the_shared_limit_counts_in_the_store() {
        let limits = ClientLimits { per_client_rps: 2, per_client_burst: 1, ..ClientLimits::default() };
        let limiter = Limiter::new(&limits, Some(Store::memory()));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let mut allowed = 0;
        for _ in 0..10 {
            allowed += usize::from(limiter.allow(a).await);
        }
        // 3 per one-second window; the loop may straddle two windows.
        assert!((3..=6).contains(&allowed), "{allowed}");
    }

    #[tokio::test]
    async fn zero_turns_it_off() {
        let limiter = Limiter::new(&ClientLimits { per_client_rps: 0, ..ClientLimits::default() }, None);
        for _ in 0..1000 {
            assert!(limiter.allow("10.0.0.1".parse().unwrap()).await);
        }
    }
}
