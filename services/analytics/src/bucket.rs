//! Time buckets: how events are counted, and for how long the counts are kept.
//!
//! A bucket is one hash per owner per aligned interval (`[k·width, (k+1)·width)` since the epoch,
//! so every replica puts an event in the same bucket without coordinating), whose fields are
//! event types and whose values are counts.

use std::time::Duration;

use crate::validate::OwnerId;

const MINUTE: i64 = 60;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// The size of a bucket. Every event is counted at each granularity; a summary reads one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// For windows up to an hour: at most 61 buckets, a summary's edge is at most a minute off.
    Minute,
    /// For longer windows: a week is 169 buckets instead of 10,081.
    Hour,
}

// === impl Granularity ===

impl Granularity {
    /// Each event is counted once at each of these.
    pub const ALL: [Self; 2] = [Self::Minute, Self::Hour];

    /// Seconds in one bucket.
    pub const fn width(self) -> i64 {
        match self {
            Self::Minute => MINUTE,
            Self::Hour => HOUR,
        }
    }

    /// How long a bucket lives after its last write: longer than the longest window read at this
    /// granularity (1h and 7d) plus one bucket, so a summary never finds a bucket it needs gone,
    /// and short enough that counts nobody can ask for go away on their own.
    pub const fn ttl(self) -> Duration {
        match self {
            Self::Minute => Duration::from_secs(2 * HOUR as u64),
            Self::Hour => Duration::from_secs(8 * DAY as u64),
        }
    }

    /// Start (unix seconds) of the bucket holding `at`.
    pub const fn start(self, at: i64) -> i64 {
        at.div_euclid(self.width()) * self.width()
    }

    /// The store key of `owner`'s bucket starting at `start`.
    pub fn key(self, owner: &OwnerId, start: i64) -> String {
        let tag = match self {
            Self::Minute => "m",
            Self::Hour => "h",
        };
        format!("analytics:{owner}:{tag}:{start}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_aligned_to_their_width() {
        let at = 1_700_000_123;
        assert_eq!(Granularity::Minute.start(at), 1_700_000_100);
        assert_eq!(Granularity::Hour.start(at), 1_699_999_200);
        for g in Granularity::ALL {
            assert_eq!(g.start(g.start(at)), g.start(at), "a start is its own bucket");
            assert_eq!(g.start(g.start(at) + g.width() - 1), g.start(at), "last second of the bucket");
            assert_eq!(g.start(g.start(at) + g.width()), g.start(at) + g.width(), "next bucket");
        }
    }

    #[test]
    fn keys_differ_by_owner_granularity_and_start() {
        let a = crate::validate::owner_id(&mesh_core::ids::new_id()).unwrap();
        let b = crate::validate::owner_id(&mesh_core::ids::new_id()).unwrap();
        let keys = [
            Granularity::Minute.key(&a, 0),
            Granularity::Minute.key(&a, 60),
            Granularity::Hour.key(&a, 0),
            Granularity::Minute.key(&b, 0),
        ];
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert_eq!(keys[0], format!("analytics:{a}:m:0"));
    }
}
