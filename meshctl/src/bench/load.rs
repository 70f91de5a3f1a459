//! The load generator: a fixed number of HTTP/1.1 connections, each from its own source address,
//! sending a request mix until a deadline, closed loop or open loop.
//!
//! - **Closed loop** (throughput): each connection sends, reads the whole answer, records the
//!   time, optionally thinks, and sends again.
//! - **Open loop** (latency): a fixed total rate spread over the connections; every request has
//!   an *intended* send time on a fixed schedule, and its latency is measured from that time,
//!   not from when it was actually sent. A stalled server therefore shows in the latency of the
//!   requests that should have gone out meanwhile, instead of hiding behind a generator that
//!   politely waited (coordinated omission; the correction wrk2 makes).
//!
//! Latencies go into one HdrHistogram (microseconds) per connection, merged at the end. Only
//! 2xx answers are latencies; everything else is an error counted by kind. With
//! [`Load::run_timeline`], every request is also counted in the slice of the run its intended
//! send time falls in, so a chaos scenario reads the figures before, during and after a fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use serde::Serialize;
use tokio::task::JoinSet;

use super::conn::{self, Conn, Failure, LOAD_BLOCK};

/// The most connections one load may open.
pub(crate) const MAX_CONNECTIONS: usize = 2_000;
/// The longest one load may run.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(120);
/// Time allowed to connect, and for one request's whole answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed connect, so a refusing server is not spun against.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);

/// One request of a mix.
#[derive(Clone, Debug)]
pub(crate) struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    /// Give every request its own `idempotency-key` (so each POST creates a new order).
    pub(crate) unique_idempotency_key: bool,
}

/// The requests a connection sends in turn, round-robin.
pub(crate) type Mix = Arc<[RequestSpec]>;

/// A [`RequestSpec`] parsed once, so each send only clones it: the generator's own cost per
/// request is CPU the measured server does not get on a shared machine.
#[derive(Debug)]
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    unique_idempotency_key: bool,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

impl Prepared {
    fn of(spec: &RequestSpec) -> anyhow::Result<Self> {
        let uri: Uri = spec.path.parse().with_context(|| format!("an invalid path {:?}", spec.path))?;
        let headers = spec.headers.iter().cloned().collect();
        let (method, body) = (spec.method.clone(), spec.body.clone());
        Ok(Self { method, uri, headers, body, unique_idempotency_key: spec.unique_idempotency_key })
    }
}

/// How requests are paced.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pacing {
    /// Send as soon as the previous answer is in, after `think`.
    Closed { think: Duration },
    /// `rate` requests per second in all, on a fixed schedule.
    Open { rate: f64 },
}

/// One load to run.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    pub(crate) target: SocketAddr,
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
    pub(crate) pacing: Pacing,
    /// Connection `i` sends `mixes[i % mixes.len()]` (e.g. one mix per user).
    pub(crate) mixes: Vec<Mix>,
}

/// What a load measured.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Figures {
    pub(crate) connections: usize,
    /// `closed` or `open`.
    pub(crate) pacing: &'static str,
    /// The open loop's intended rate.
    pub(crate) target_rate: Option<f64>,
    pub(crate) duration_s: f64,
    /// Every request that got an answer or failed.
    pub(crate) requests: u64,
    pub(crate) rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    pub(crate) errors: u64,
    /// By kind: `http 503`, `connect`, `io`, `timeout`.
    pub(crate) error_kinds: BTreeMap<String, u64>,
    /// The first answer (or cause) of each kind, shortened: what the server said.
    pub(crate) error_samples: BTreeMap<String, String>,
}

/// What one connection saw.
struct Tally {
    latencies: Histogram<u64>,
    requests: u64,
    errors: BTreeMap<String, u64>,
    samples: BTreeMap<String, String>,
    timeline: Option<Timeline>,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 1 h at 3 significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// A load's requests by the slice of the run their intended send time falls in.
#[derive(Clone, Debug)]
pub(crate) struct Timeline {
    pub(crate) width: Duration,
    slices: Vec<Slice>,
}

/// The requests of one stretch of a run.
#[derive(Clone, Debug)]
pub(crate) struct Slice {
    pub(crate) latencies: Histogram<u64>,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
}

// === impl Slice ===

impl Slice {
    fn new() -> Self {
        // Two significant digits: a slice's p99 needs no more, and every connection keeps
        // every slice (a quarter of the memory of three digits).
        let latencies = Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds");
        Self { latencies, requests: 0, errors: 0 }
    }

    fn merge(&mut self, other: &Slice) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies.add(&other.latencies).expect("histograms of the same bounds");
    }

    /// A latency quantile of the successful requests, in ms (0 when there were none).
    pub(crate) fn quantile_ms(&self, q: f64) -> f64 {
        self.latencies.value_at_quantile(q) as f64 / 1000.0
    }
}

// === impl Timeline ===

impl Timeline {
    fn new(width: Duration, duration: Duration) -> Self {
        let count = (duration.as_secs_f64() / width.as_secs_f64()).ceil() as usize + 1;
        Self { width, slices: vec![Slice::new(); count] }
    }

    fn slice(&mut self, at: Duration) -> &mut Slice {
        let index = ((at.as_secs_f64() / self.width.as_secs_f64()) as usize).min(self.slices.len() - 1);
        &mut self.slices[index]
    }

    fn merge(&mut self, other: &Timeline) {
        for (mine, theirs) in self.slices.iter_mut().zip(&other.slices) {
            mine.merge(theirs);
        }
    }

    /// Every request intended to go out in `[from, to)` since the start, as one slice.
    pub(crate) fn span(&self, from: Duration, to: Duration) -> Slice {
        let mut total = Slice::new();
        for (index, slice) in self.slices.iter().enumerate() {
            let start = self.width * index as u32;
            if start >= from && start < to {
                total.merge(slice);
            }
        }
        total
    }
}

/// Characters of an error's answer kept as its sample.
const SAMPLE_CHARS: usize = 200;

// === impl Tally ===

impl Tally {
    fn new(timeline: Option<Timeline>) -> Self {
        Self {
            latencies: histogram(),
            requests: 0,
            errors: BTreeMap::new(),
            samples: BTreeMap::new(),
            timeline,
        }
    }

    /// A request intended at `at` since the start failed.
    fn error(&mut self, at: Duration, kind: String, sample: impl FnOnce() -> String) {
        if let Some(slice) = self.timeline.as_mut().map(|t| t.slice(at)) {
            slice.requests += 1;
            slice.errors += 1;
        }
        self.requests += 1;
        self.samples.entry(kind.clone()).or_insert_with(|| sample().chars().take(SAMPLE_CHARS).collect());
        *self.errors.entry(kind).or_default() += 1;
    }

    /// A request intended at `at` since the start succeeded after `latency`.
    fn success(&mut self, at: Duration, latency: Duration) {
        let micros = (latency.as_micros() as u64).max(1);
        if let Some(slice) = self.timeline.as_mut().map(|t| t.slice(at)) {
            slice.requests += 1;
            slice.latencies.saturating_record(micros);
        }
        self.requests += 1;
        self.latencies.saturating_record(micros);
    }

    fn merge(&mut self, other: Tally) {
        if let (Some(mine), Some(theirs)) = (self.timeline.as_mut(), other.timeline.as_ref()) {
            mine.merge(theirs);
        }
        self.requests += other.requests;
        self.latencies.add(&other.latencies).expect("histograms of the same bounds");
        for (kind, n) in other.errors {
            *self.errors.entry(kind).or_default() += n;
        }
        for (kind, sample) in other.samples {
            self.samples.entry(kind).or_insert(sample);
        }
    }
}

// === impl Load ===

impl Load {
    /// Runs the load: connects every connection first, then drives them all until the deadline.
    pub(crate) async fn run(self) -> anyhow::Result<Figures> {
        Ok(self.run_inner(None).await?.0)
    }

    /// [`Load::run`], every request also counted in its `width` slice of the run.
    pub(crate) async fn run_timeline(self, width: Duration) -> anyhow::Result<(Figures, Timeline)> {
        anyhow::ensure!(!width.is_zero(), "a timeline needs slices longer than zero");
        let timeline = Timeline::new(width, self.duration);
        let (figures, timeline) = self.run_inner(Some(timeline)).await?;
        Ok((figures, timeline.expect("kept")))
    }

    async fn run_inner(self, timeline: Option<Timeline>) -> anyhow::Result<(Figures, Option<Timeline>)> {
        conn::ensure_loopback(self.target)?;
        anyhow::ensure!(
            (1..=MAX_CONNECTIONS).contains(&self.connections),
            "connections must be 1..={MAX_CONNECTIONS}, not {}",
            self.connections
        );
        anyhow::ensure!(self.duration <= MAX_DURATION, "a load runs at most {MAX_DURATION:?}");
        anyhow::ensure!(!self.mixes.is_empty() && self.mixes.iter().all(|m| !m.is_empty()), "an empty mix");
        if let Pacing::Open { rate } = self.pacing {
            anyhow::ensure!(rate > 0.0, "an open loop needs a positive rate");
        }

        let mixes = self.prepared_mixes()?;
        let opened = self.open_connections().await;
        let start = Instant::now();
        let deadline = start + self.duration;
        let run = next_run_id();
        let mut drivers = JoinSet::new();
        for (index, conn) in opened.into_iter().enumerate() {
            let driver = Driver {
                index,
                target: self.target,
                mix: mixes[index % mixes.len()].clone(),
                first_send: start + self.schedule_offset(index),
                interval: self.interval(),
                think: self.think(),
                deadline,
                start,
                run,
            };
            drivers.spawn(driver.drive(conn, timeline.clone()));
        }
        let mut total = Tally::new(timeline);
        while let Some(tally) = drivers.join_next().await {
            total.merge(tally?);
        }
        let timeline = total.timeline.take();
        Ok((self.figures(total, start.elapsed()), timeline))
    }

    fn prepared_mixes(&self) -> anyhow::Result<Vec<Arc<[Prepared]>>> {
        self.mixes.iter().map(|mix| mix.iter().map(Prepared::of).collect::<anyhow::Result<_>>()).collect()
    }

    async fn open_connections(&self) -> Vec<Option<Conn>> {
        let mut opening = JoinSet::new();
        for index in 0..self.connections {
            let target = self.target;
            opening.spawn(async move {
                let source = conn::source_address(LOAD_BLOCK, index);
                (index, Conn::open(target, source, CONNECT_TIMEOUT).await.ok())
            });
        }
        let mut opened: Vec<Option<Conn>> = (0..self.connections).map(|_| None).collect();
        while let Some(Ok((index, conn))) = opening.join_next().await {
            opened[index] = conn;
        }
        opened
    }

    /// Time between two requests of one connection, in the open loop.
    fn interval(&self) -> Option<Duration> {
        match self.pacing {
            Pacing::Closed { .. } => None,
            Pacing::Open { rate } => Some(Duration::from_secs_f64(self.connections as f64 / rate)),
        }
    }

    /// Connections start their schedules spread over one interval, not all at once.
    fn schedule_offset(&self, index: usize) -> Duration {
        self.interval()
            .map_or(Duration::ZERO, |interval| interval.mul_f64(index as f64 / self.connections as f64))
    }

    fn think(&self) -> Duration {
        match self.pacing {
            Pacing::Closed { think } => think,
            Pacing::Open { .. } => Duration::ZERO,
        }
    }

    fn figures(&self, tally: Tally, elapsed: Duration) -> Figures {
        let ms = |micros: u64| micros as f64 / 1000.0;
        let h = &tally.latencies;
        // A closed loop's requests in flight at the deadline finish and count, so its rate is
        // over the time until the last one did; an open loop's is over its schedule, so a slow
        // last answer does not dilute the rate it kept.
        let (pacing, target_rate, span) = match self.pacing {
            Pacing::Closed { .. } => ("closed", None, elapsed),
            Pacing::Open { rate } => ("open", Some(rate), self.duration),
        };
        Figures {
            connections: self.connections,
            pacing,
            target_rate,
            duration_s: elapsed.as_secs_f64(),
            requests: tally.requests,
            rps: tally.requests as f64 / span.as_secs_f64().max(1e-9),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
            errors: tally.errors.values().sum(),
            error_kinds: tally.errors,
            error_samples: tally.samples,
        }
    }
}

/// Distinguishes the `idempotency-key`s of one load from every other load's.
fn next_run_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    epoch * 1000 + NEXT.fetch_add(1, Ordering::Relaxed)
}

/// One connection's loop.
struct Driver {
    index: usize,
    target: SocketAddr,
    mix: Arc<[Prepared]>,
    /// When the first request is intended to go out.
    first_send: Instant,
    /// Open loop: the fixed time between this connection's intended sends.
    interval: Option<Duration>,
    /// Closed loop: the pause after each answer (a user reading the page).
    think: Duration,
    deadline: Instant,
    /// When the load started: a request's slice of the timeline is its intended time since.
    start: Instant,
    run: u64,
}

// === impl Driver ===

impl Driver {
    async fn drive(self, mut conn: Option<Conn>, timeline: Option<Timeline>) -> Tally {
        let mut tally = Tally::new(timeline);
        let mut sent: u32 = 0;
        loop {
            let intended = match self.interval {
                Some(interval) => self.first_send + interval * sent,
                None => Instant::now(),
            };
            if intended >= self.deadline {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
            let spec = &self.mix[sent as usize % self.mix.len()];
            let request = self.request(spec, sent);
            sent += 1;
            let at = intended.saturating_duration_since(self.start);
            match tokio::time::timeout(REQUEST_TIMEOUT, self.send(&mut conn, request)).await {
                Ok(Ok((status, _))) if status.is_success() => tally.success(at, intended.elapsed()),
                Ok(Ok((status, body))) => tally
                    .error(at, format!("http {}", status.as_u16()), || String::from_utf8_lossy(&body).into()),
                Ok(Err(failure @ Failure::Connect(_))) => {
                    tally.error(at, "connect".into(), || failure.to_string());
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                }
                Ok(Err(failure @ (Failure::Io(_) | Failure::Closed))) => {
                    tally.error(at, "io".into(), || failure.to_string());
                    conn = None;
                }
                Err(_) => {
                    tally.error(at, "timeout".into(), || format!("no whole answer in {REQUEST_TIMEOUT:?}"));
                    conn = None;
                }
            }
            if !self.think.is_zero() {
                tokio::time::sleep_until((Instant::now() + self.think).min(self.deadline).into()).await;
            }
        }
        tally
    }

    /// Sends on the open connection, first opening a new one when there is none or the
    /// server closed it (a keep-alive limit is not an error).
    async fn send(
        &self,
        conn: &mut Option<Conn>,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), Failure> {
        let open = match conn.as_mut() {
            Some(conn) => conn.is_open().await,
            None => false,
        };
        if !open {
            let source = conn::source_address(LOAD_BLOCK, self.index);
            *conn = Some(Conn::open(self.target, source, CONNECT_TIMEOUT).await?);
        }
        let open = conn.as_mut().expect("just opened");
        let response = open.send(request).await?;
        Ok((response.status(), response.into_body()))
    }

    fn request(&self, spec: &Prepared, sent: u32) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(spec.body.clone()));
        *request.method_mut() = spec.method.clone();
        *request.uri_mut() = spec.uri.clone();
        *request.headers_mut() = spec.headers.clone();
        if spec.unique_idempotency_key {
            let key = format!("bench-{}-{}-{sent}", self.run, self.index);
            let key = HeaderValue::try_from(key).expect("digits and dashes are a valid header value");
            request.headers_mut().insert(IDEMPOTENCY_KEY, key);
        }
        request
    }
}
