//! A bounded load generator for chaos tests: a fixed number of workers send requests until a
//! deadline or a request count, whichever comes first, to loopback addresses only.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// What one request returned.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    pub latency: Duration,
    /// HTTP status, or 0 when no answer came (connection error, timeout).
    pub status: u16,
    /// A label for grouping (e.g. the route).
    pub label: &'static str,
}

impl Sample {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Every sample of a run.
#[derive(Debug, Default)]
pub struct Report {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

impl Report {
    pub fn sent(&self) -> usize {
        self.samples.len()
    }

    pub fn failed(&self) -> Vec<&Sample> {
        self.samples.iter().filter(|s| !s.ok()).collect()
    }

    /// The `q` quantile (0..=1) of latency among samples matching `filter`.
    pub fn latency_quantile(&self, q: f64, filter: impl Fn(&Sample) -> bool) -> Duration {
        let mut latencies: Vec<Duration> =
            self.samples.iter().filter(|s| filter(s)).map(|s| s.latency).collect();
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        latencies.sort();
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index.min(latencies.len() - 1)]
    }

    pub fn throughput(&self) -> f64 {
        self.sent() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One line for test output.
    pub fn summary(&self) -> String {
        format!(
            "{} sent in {:.1?} ({:.0}/s), {} failed, p50 {:.1?}, p99 {:.1?}",
            self.sent(),
            self.elapsed,
            self.throughput(),
            self.failed().len(),
            self.latency_quantile(0.5, |_| true),
            self.latency_quantile(0.99, |_| true),
        )
    }
}

/// How much load.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub workers: usize,
    pub duration: Duration,
    /// Hard cap on requests, whatever the duration.
    pub max_requests: u64,
}

/// Refuses any target that is not a loopback address: load never leaves this machine.
pub fn assert_loopback(host: IpAddr) {
    assert!(host.is_loopback(), "load may only target loopback addresses, not {host}");
}

/// Runs `request(n)` from `spec.workers` workers until the deadline or the cap. `request`
/// returns (label, status); its latency is measured here.
pub async fn run<F, Fut>(spec: Spec, request: F) -> Report
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (&'static str, u16)> + Send,
{
    run_paced(spec, Duration::ZERO, request).await
}

/// Like [`run`], each worker starting a request at most once per `every` (an open-loop rate of
/// `workers / every` at most, as clients that keep under a rate limit send). The wait is not
/// part of any request's latency.
pub async fn run_paced<F, Fut>(spec: Spec, every: Duration, request: F) -> Report
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (&'static str, u16)> + Send,
{
    let started = Instant::now();
    let deadline = started + spec.duration;
    let next = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let request = Arc::new(request);
    let mut workers = Vec::new();
    for _ in 0..spec.workers.max(1) {
        let (next, samples, request) = (next.clone(), samples.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= spec.max_requests || Instant::now() >= deadline {
                    break;
                }
                let sent = Instant::now();
                let (label, status) = request(n).await;
                mine.push(Sample { at: sent - started, latency: sent.elapsed(), status, label });
                tokio::time::sleep_until((sent + every).into()).await;
            }
            samples.lock().await.extend(mine);
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let mut samples = std::mem::take(&mut *samples.lock().await);
    samples.sort_by_key(|s| s.at);
    Report { samples, elapsed: started.elapsed() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn load_stops_at_its_cap_and_reports_quantiles() {
        let spec = Spec { workers: 4, duration: Duration::from_secs(10), max_requests: 100 };
        let report = run(spec, |n| async move { ("x", if n % 10 == 0 { 503 } else { 200 }) }).await;
        assert_eq!(report.sent(), 100);
        assert_eq!(report.failed().len(), 10);
        assert!(report.latency_quantile(0.99, |_| true) >= report.latency_quantile(0.5, |_| true));
    }

    #[tokio::test]
    async fn load_stops_at_its_deadline() {
        let spec = Spec { workers: 2, duration: Duration::from_millis(100), max_requests: u64::MAX };
        let report = run(spec, |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            ("x", 200)
        })
        .await;
        assert!(report.elapsed < Duration::from_secs(1));
        assert!(report.sent() < 100);
    }

    #[tokio::test]
    async fn paced_load_keeps_to_its_rate() {
        // 2 workers, one request each per 20 ms, for 200 ms: at most 2 * (200 / 20 + 1) = 22
        // requests, however fast the requests are.
        let spec = Spec { workers: 2, duration: Duration::from_millis(200), max_requests: u64::MAX };
        let report = run_paced(spec, Duration::from_millis(20), |_| async { ("x", 200) }).await;
        assert!(report.sent() <= 22, "{} sent", report.sent());
        assert!(report.sent() >= 2);
        assert!(
            report.latency_quantile(0.99, |_| true) < Duration::from_millis(20),
            "the wait counted as latency"
        );
    }

    #[test]
    #[should_panic(expected = "loopback")]
    fn non_loopback_targets_are_refused() {
        assert_loopback("10.1.2.3".parse().unwrap());
    }
}
