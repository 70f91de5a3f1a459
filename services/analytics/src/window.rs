//! The windows a summary may cover, and which buckets cover each.

use mesh_core::ServiceError;

use crate::bucket::Granularity;

/// A summary window: the last `seconds` up to now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub name: &'static str,
    pub seconds: i64,
}

/// The accepted windows, shortest first. A fixed set, so that every one is a whole number of
/// buckets and no request can ask for more buckets than the longest of these.
pub const WINDOWS: [Window; 6] = [
    Window { name: "5m", seconds: 5 * 60 },
    Window { name: "15m", seconds: 15 * 60 },
    Window { name: "1h", seconds: 3600 },
    Window { name: "6h", seconds: 6 * 3600 },
    Window { name: "24h", seconds: 24 * 3600 },
    Window { name: "7d", seconds: 7 * 24 * 3600 },
];

/// The window of a request that names none.
pub const DEFAULT: &str = "1h";

/// The buckets a summary sums, and the exact span they cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub granularity: Granularity,
    /// Bucket starts, oldest first, contiguous.
    pub starts: Vec<i64>,
    /// Start of the oldest bucket (unix seconds).
    pub from: i64,
    /// The moment the summary was taken (unix seconds).
    pub to: i64,
}

// === impl Window ===

impl Window {
    /// The window named `raw` (empty means [`DEFAULT`]).
    pub fn parse(raw: &str) -> Result<Self, ServiceError> {
        let name = if raw.is_empty() { DEFAULT } else { raw };
        WINDOWS.into_iter().find(|w| w.name == name).ok_or_else(|| {
            let accepted: Vec<&str> = WINDOWS.iter().map(|w| w.name).collect();
            ServiceError::invalid(format!("window: must be one of {}", accepted.join(", ")))
        })
    }

    /// Minute buckets up to an hour, hour buckets above.
    pub fn granularity(self) -> Granularity {
        if self.seconds <= Granularity::Hour.width() { Granularity::Minute } else { Granularity::Hour }
    }

    /// The buckets covering the window as of `now`: from the bucket holding `now - window` to the
    /// one holding `now`. The current bucket is only partly elapsed, so the span covers at least
    /// the window and less than one bucket more; rather than pretend otherwise, the summary
    /// reports `from` as the oldest bucket's start.
    pub fn span(self, now: i64) -> Span {
        let granularity = self.granularity();
        let width = granularity.width();
        let from = granularity.start(now - self.seconds);
        let count = (granularity.start(now) - from) / width + 1;
        Span { granularity, starts: (0..count).map(|i| from + i * width).collect(), from, to: now }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_123;

    #[test]
    fn accepted_windows_parse_and_empty_is_one_hour() {
        for window in WINDOWS {
            assert_eq!(Window::parse(window.name).unwrap(), window);
        }
        assert_eq!(Window::parse("").unwrap().name, "1h");
    }

    #[test]
    fn anything_else_is_refused_with_the_accepted_values() {
        for bad in ["1m", "60m", "1H", " 1h", "1d", "forever", "-5m"] {
            let Err(ServiceError::InvalidArgument(message)) = Window::parse(bad) else {
                panic!("{bad:?} was accepted");
            };
            assert_eq!(message, "window: must be one of 5m, 15m, 1h, 6h, 24h, 7d");
        }
    }

    #[test]
    fn windows_up_to_an_hour_read_minutes_and_longer_ones_hours() {
        let granularities: Vec<_> = WINDOWS.iter().map(|w| w.granularity()).collect();
        use Granularity::{Hour, Minute};
        assert_eq!(granularities, [Minute, Minute, Minute, Hour, Hour, Hour]);
    }

    #[test]
    fn a_span_covers_the_window_with_contiguous_buckets_ending_now() {
        for window in WINDOWS {
            for now in [NOW, Granularity::Hour.start(NOW), Granularity::Hour.start(NOW) - 1] {
                let span = window.span(now);
                let width = span.granularity.width();
                assert_eq!(span.to, now);
                assert_eq!(span.from, span.starts[0]);
                assert_eq!(*span.starts.last().unwrap(), span.granularity.start(now), "ends in now's bucket");
                assert!(span.starts.windows(2).all(|p| p[1] - p[0] == width), "contiguous");
                assert!(span.starts.iter().all(|s| s % width == 0), "aligned");
                let covered = now - span.from;
                assert!(
                    covered >= window.seconds && covered < window.seconds + width,
                    "{window:?}: {covered}"
                );
                assert_eq!(span.starts.len() as i64, window.seconds / width + 1);
            }
        }
        assert_eq!(WINDOWS[0].span(NOW).starts.len(), 6, "5m: five whole minutes and the current one");
        assert_eq!(WINDOWS[5].span(NOW).starts.len(), 169, "7d");
    }

    #[test]
    fn every_bucket_a_span_reads_is_still_alive() {
        for window in WINDOWS {
            let span = window.span(NOW);
            // A bucket's last write is before its end; it lives `ttl` past that.
            let oldest_expiry = span.from + span.granularity.ttl().as_secs() as i64;
            assert!(oldest_expiry > NOW, "{window:?} reads buckets that already expired");
        }
    }
}
