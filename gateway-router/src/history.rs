//! The recent history of one pool's answers, for the status page's charts: a fixed ring of
//! time buckets (`status.history / status.bucket` of them), each holding the answers' count,
//! their 5xx count and a fixed log-scale latency histogram, from which the p99 is read.
//!
//! Recording is a few relaxed atomic additions on the request's path: no lock, no allocation.
//! The ring is allocated once, so memory is bounded whatever the traffic (about 0.8 KiB a
//! bucket). A bucket is reused when its slot comes round again: the first answer of the new
//! period claims it (compare-and-swap on its period number) and clears it. An answer recorded
//! by another thread in that instant may be lost from the chart; the metrics
//! (`router_requests_total`) count every answer exactly.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Sub-buckets per power of two of the latency histogram: each bucket is at most 1/8 of its
/// lower bound wide, so a p99 read at a bucket's middle is within about 6% of the true one.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Latency buckets: 1 µs wide below 8 µs, then 8 per power of two up to 2^27 µs (134 s); a
/// slower answer counts in the last.
const LATENCY_BUCKETS: usize = 200;
/// The period number of a bucket not used yet.
const UNUSED: u64 = u64::MAX;

/// One pool's answer history.
pub struct History {
    bucket_nanos: u64,
    epoch: Instant,
    epoch_unix_ms: u64,
    ring: Box<[Bucket]>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("bucket", &Duration::from_nanos(self.bucket_nanos))
            .field("buckets", &self.ring.len())
            .finish_non_exhaustive()
    }
}

struct Bucket {
    /// The period (time since the epoch / bucket width) these answers belong to.
    period: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU32; LATENCY_BUCKETS],
}

/// What the JSON view shows of a history: its buckets since the router started, oldest first,
/// at most `capacity` of them; the last one is the current, partial bucket.
#[derive(Debug, Serialize)]
pub struct HistoryView {
    pub bucket_seconds: f64,
    pub capacity: usize,
    pub buckets: Vec<BucketView>,
}

/// One bucket of a [`HistoryView`].
#[derive(Debug, Serialize, PartialEq)]
pub struct BucketView {
    /// When the bucket starts, in milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// How much of the bucket has passed (less than `bucket_seconds` for the current one).
    pub seconds: f64,
    pub requests: u64,
    /// Answers with a 5xx status, the router's own included.
    pub errors: u64,
    /// `requests / seconds`.
    pub rps: f64,
    /// `errors / requests`, 0 without requests.
    pub error_rate: f64,
    /// The 99th percentile of the answers' latency (to response headers), none without answers.
    pub p99_ms: Option<f64>,
}

// === impl History ===

impl History {
    /// A history of `span` in buckets of `bucket` (at least one bucket).
    pub fn new(span: Duration, bucket: Duration) -> Self {
        let bucket_nanos = u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX).max(1);
        let len = span.as_nanos().div_ceil(u128::from(bucket_nanos)).max(1);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let epoch_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            bucket_nanos,
            epoch: Instant::now(),
            epoch_unix_ms,
            ring: (0..len).map(|_| Bucket::new()).collect(),
        }
    }

    fn period(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch).as_nanos() / u128::from(self.bucket_nanos);
        u64::try_from(since).unwrap_or(UNUSED - 1)
    }

    fn slot(&self, period: u64) -> &Bucket {
        &self.ring[(period % self.ring.len() as u64) as usize]
    }

    /// Counts one answer with `status`, `latency` after its request arrived, at `now`.
    pub fn record(&self, now: Instant, status: u16, latency: Duration) {
        let period = self.period(now);
        let bucket = self.slot(period);
        let seen = bucket.period.load(Ordering::Acquire);
        if seen != period {
            if seen != UNUSED && seen > period {
                // This answer's period was already rolled off by a later one.
                return;
            }
            if bucket.period.compare_exchange(seen, period, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                bucket.clear();
            }
        }
        bucket.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            bucket.errors.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        bucket.latency[latency_index(micros)].fetch_add(1, Ordering::Relaxed);
    }

    /// The buckets of the last `status.history` as of `now`, oldest first.
    pub fn view(&self, now: Instant) -> HistoryView {
        let current = self.period(now);
        let len = self.ring.len() as u64;
        let first = current.saturating_sub(len - 1);
        let bucket_seconds = self.bucket_nanos as f64 / 1e9;
        let buckets = (first..=current)
            .map(|period| {
                let start = Duration::from_nanos(period.saturating_mul(self.bucket_nanos));
                let seconds = if period == current {
                    now.saturating_duration_since(self.epoch).saturating_sub(start).as_secs_f64().max(1e-3)
                } else {
                    bucket_seconds
                };
                let start_unix_ms =
                    self.epoch_unix_ms.saturating_add(u64::try_from(start.as_millis()).unwrap_or(u64::MAX));
                let bucket = self.slot(period);
                let (requests, errors, p99) = if bucket.period.load(Ordering::Acquire) == period {
                    bucket.read()
                } else {
                    (0, 0, None)
                };
                BucketView {
                    start_unix_ms,
                    seconds,
                    requests,
                    errors,
                    rps: requests as f64 / seconds,
                    error_rate: if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
                    p99_ms: p99,
                }
            })
            .collect();
        HistoryView { bucket_seconds, capacity: self.ring.len(), buckets }
    }
}

// === impl Bucket ===

impl Bucket {
    fn new() -> Self {
        Self {
            period: AtomicU64::new(UNUSED),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    fn clear(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        self.latency.iter().for_each(|c| c.store(0, Ordering::Relaxed));
    }

    /// Its requests, errors and p99 latency in milliseconds.
    fn read(&self) -> (u64, u64, Option<f64>) {
        let counts: Vec<u64> = self.latency.iter().map(|c| u64::from(c.load(Ordering::Relaxed))).collect();
        let total: u64 = counts.iter().sum();
        let p99 = (total > 0).then(|| {
            // The smallest latency at or above which 1% of the answers lie.
            let rank = total - total / 100;
            let mut seen = 0;
            let index = counts
                .iter()
                .position(|&c| {
                    seen += c;
                    seen >= rank
                })
                .unwrap_or(LATENCY_BUCKETS - 1);
            let (low, high) = latency_bounds(index);
            (low + high) as f64 / 2.0 / 1000.0
        });
        (self.requests.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed), p99)
    }
}

/// The histogram bucket of a latency in microseconds.
fn latency_index(micros: u64) -> usize {
    if micros < SUB {
        return micros as usize;
    }
    let exponent = 63 - micros.leading_zeros();
    let sub = (micros >> (exponent - SUB_BITS)) & (SUB - 1);
    let index = SUB + u64::from(exponent - SUB_BITS) * SUB + sub;
    usize::try_from(index).unwrap_or(usize::MAX).min(LATENCY_BUCKETS - 1)
}

/// The latencies (microseconds, `[low, high)`) that fall in histogram bucket `index`.
fn latency_bounds(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < SUB {
        return (index, index + 1);
    }
    let shift = (index - SUB) / SUB;
    let sub = (index - SUB) % SUB;
    ((SUB + sub) << shift, (SUB + sub + 1) << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn every_latency_falls_in_the_bucket_that_bounds_it() {
        for micros in (0..5000).chain([1 << 20, (1 << 27) - 1, 123_456_789]) {
            let (low, high) = latency_bounds(latency_index(micros));
            assert!(low <= micros && micros < high, "{micros} µs in [{low}, {high})");
            assert!(high - low <= (low / SUB).max(1), "{micros}: bucket [{low}, {high}) too wide");
        }
        assert_eq!(latency_index(u64::MAX), LATENCY_BUCKETS - 1, "slower answers count in the last bucket");
    }

    #[test]
    fn the_p99_comes_from_the_distribution() {
        let history = History::new(Duration::from_secs(60), Duration::from_secs(5));
        let at = history.epoch + Duration::from_secs(1);
        // 1..=1000 ms, one answer each: the p99 is 990 ms.
        for ms in 1..=1000 {
            history.record(at, 200, ms * MS);
        }
        let view = history.view(at);
        let p99 = view.buckets.last().unwrap().p99_ms.unwrap();
        assert!((p99 - 990.0).abs() / 990.0 < 0.07, "p99 {p99} ms");
        // 98 fast answers and 2 slow ones: the p99 is a slow one.
        let history = History::new(Duration::from_secs(60), Duration::from_secs(5));
        let at = history.epoch + Duration::from_secs(1);
        for _ in 0..98 {
            history.record(at, 200, 2 * MS);
        }
        history.record(at, 503, 400 * MS);
        history.record(at, 503, 400 * MS);
        let last = history.view(at).buckets.pop().unwrap();
        assert!((last.p99_ms.unwrap() - 400.0).abs() < 400.0 * 0.07, "{last:?}");
        assert_eq!((last.requests, last.errors), (100, 2));
        assert!((last.error_rate - 0.02).abs() < 1e-9);
        assert!((last.rps - 100.0).abs() < 1e-6, "100 answers in the first second: {last:?}");
    }

    #[test]
    fn old_buckets_roll_off_and_the_ring_stays_bounded() {
        let bucket = Duration::from_secs(5);
        let history = History::new(Duration::from_secs(60), bucket);
        assert_eq!(history.ring.len(), 12);
        let epoch = history.epoch;
        // One answer per bucket for 30 buckets, as many as the bucket's number.
        for period in 0..30u32 {
            let at = epoch + bucket * period + MS;
            for _ in 0..=period {
                history.record(at, 200, MS);
            }
        }
        let now = epoch + bucket * 29 + Duration::from_secs(1);
        let view = history.view(now);
        assert_eq!(view.capacity, 12);
        assert_eq!(view.buckets.len(), 12, "only the last minute");
        let requests: Vec<u64> = view.buckets.iter().map(|b| b.requests).collect();
        assert_eq!(requests, (19..=30).collect::<Vec<u64>>(), "the oldest rolled off");
        assert_eq!(view.buckets[0].start_unix_ms, history.epoch_unix_ms + 18 * 5000);
        assert!((view.buckets[11].seconds - 1.0).abs() < 1e-6, "the current bucket is partial");

        // A quiet stretch: the buckets it covers show nothing, not what their slots held a
        // round before.
        let later = now + bucket * 5;
        let view = history.view(later);
        let requests: Vec<u64> = view.buckets.iter().map(|b| b.requests).collect();
        assert_eq!(requests, [24, 25, 26, 27, 28, 29, 30, 0, 0, 0, 0, 0]);
        assert!(view.buckets.last().unwrap().p99_ms.is_none());
        // A late answer for a period already rolled off is dropped, not counted in its slot.
        history.record(later, 200, MS);
        history.record(epoch + MS, 200, MS);
        assert_eq!(history.view(later).buckets.last().unwrap().requests, 1);
    }

    #[test]
    fn a_fresh_router_shows_only_the_buckets_since_it_started() {
        let history = History::new(Duration::from_secs(300), Duration::from_secs(5));
        let view = history.view(history.epoch + Duration::from_secs(12));
        assert_eq!(view.buckets.len(), 3);
        assert_eq!(view.capacity, 60);
        assert!(view.buckets.iter().all(|b| b.requests == 0 && b.p99_ms.is_none()));
    }
}
