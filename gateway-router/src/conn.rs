//! What one client connection may hold: admission by count, and the deadlines that close it.
//!
//! hyper bounds a request head (`header_read_timeout`) but not what surrounds it: the
//! HTTP/1-vs-HTTP/2 detection of hyper-util's auto builder reads its preface with no deadline,
//! a connection may stay open idle, and a client that stops reading its response holds the
//! write forever. The three pieces here close those gaps:
//! - [`Connections`]: a global cap and a per-address cap, refused at accept;
//! - [`Activity`] + [`watch`]: the first-request and idle deadlines of one connection, and the
//!   response a client stopped taking ([`Tracked`]: an HTTP/2 client that never opens its flow
//!   control window stalls no socket write, so only the response body can tell);
//! - [`WriteDeadline`]: an IO wrapper that fails a write making no progress for too long.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::config::ClientLimits;

/// Why a connection was refused at accept or closed by a deadline (the metric's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// `limits.max_connections` reached.
    GlobalCap,
    /// `limits.max_connections_per_client` reached for this address.
    ClientCap,
    /// No byte within `limits.first_byte_timeout`.
    FirstByte,
    /// The first request's head did not arrive within `limits.header_read_timeout`.
    Head,
    /// No request in flight for `limits.idle_timeout`.
    Idle,
    /// A response frame not taken by the client for `limits.write_timeout`.
    Write,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GlobalCap => "global_cap",
            Self::ClientCap => "client_cap",
            Self::FirstByte => "first_byte_timeout",
            Self::Head => "header_timeout",
            Self::Idle => "idle_timeout",
            Self::Write => "write_timeout",
        }
    }

    pub fn count(self) {
        metrics::counter!("router_connections_closed_total", "reason" => self.as_str()).increment(1);
    }
}

// === impl Connections ===

/// Open client connections, in all and per address.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

impl Connections {
    pub fn new(limits: &ClientLimits) -> Arc<Self> {
        Arc::new(Self {
            max: limits.max_connections,
            max_per_client: limits.max_connections_per_client,
            open: AtomicUsize::new(0),
            per_client: Mutex::default(),
        })
    }

    /// A slot for a connection from `peer`, held until the slot drops. `per_client` is false
    /// for a trusted proxy, which carries many clients on its connections.
    pub fn admit(self: &Arc<Self>, peer: IpAddr, per_client: bool) -> Result<Slot, Closed> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Closed::GlobalCap);
        }
        let keyed = if per_client {
            let mut table = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let count = table.entry(peer).or_insert(0);
            if *count >= self.max_per_client {
                drop(table);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Closed::ClientCap);
            }
            *count += 1;
            Some(peer)
        } else {
            None
        };
        metrics::gauge!("router_connections_open").increment(1.0);
        Ok(Slot { connections: self.clone(), peer: keyed })
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One admitted connection.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    peer: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut table = self.connections.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = table.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    table.remove(&peer);
                }
            }
        }
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("router_connections_open").decrement(1.0);
    }
}

// === impl Activity ===

/// What a connection is doing, for its deadlines: requests begun, requests in flight (until
/// their response body ends), and when that count last changed.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    begun: AtomicU64,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened`.
    last_change: AtomicU64,
    /// The responses in flight, for their stalls.
    responses: Mutex<Vec<Weak<Stall>>>,
}

/// When a response last handed a frame that has not been taken since (milliseconds after the
/// connection opened, plus one; 0: none waiting).
#[derive(Debug, Default)]
pub struct Stall(AtomicU64);

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            begun: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_change: AtomicU64::new(0),
            responses: Mutex::default(),
        })
    }

    fn touch(&self) {
        let ms = self.opened.elapsed().as_millis().min(u128::from(u64::MAX)) as u64;
        self.last_change.store(ms, Ordering::Release);
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis().min(u128::from(u64::MAX - 1)) as u64
    }

    /// A request has begun; it is in flight until the guard drops (with its response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.begun.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        let stall = Arc::new(Stall::default());
        let mut responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        responses.retain(|r| r.strong_count() > 0);
        responses.push(Arc::downgrade(&stall));
        drop(responses);
        InFlight { activity: self.clone(), stall }
    }

    /// When the connection is due to close, and why.
    fn deadline(&self, limits: &ClientLimits) -> (Instant, Closed) {
        if self.begun.load(Ordering::Acquire) == 0 {
            return (self.opened + limits.header_read_timeout, Closed::Head);
        }
        if self.in_flight.load(Ordering::Acquire) > 0 {
            // The oldest frame a client has not taken, if any; else look again later.
            let responses = self.responses.lock().unwrap_or_else(|p| p.into_inner());
            let oldest = responses
                .iter()
                .filter_map(Weak::upgrade)
                .map(|s| s.0.load(Ordering::Acquire))
                .filter(|ms| *ms > 0)
                .min();
            drop(responses);
            return match oldest {
                Some(ms) => {
                    (self.opened + Duration::from_millis(ms - 1) + limits.write_timeout, Closed::Write)
                }
                None => (Instant::now() + limits.write_timeout.min(limits.idle_timeout), Closed::Idle),
            };
        }
        let last = self.opened + Duration::from_millis(self.last_change.load(Ordering::Acquire));
        (last + limits.idle_timeout, Closed::Idle)
    }

    /// Whether the deadline that was due has really passed (it may have moved meanwhile).
    fn overdue(&self, limits: &ClientLimits) -> Option<Closed> {
        let (due, reason) = self.deadline(limits);
        let really = match reason {
            Closed::Idle => self.in_flight.load(Ordering::Acquire) == 0,
            _ => true,
        };
        (really && due <= Instant::now()).then_some(reason)
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub struct InFlight {
    activity: Arc<Activity>,
    stall: Arc<Stall>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.activity.touch();
    }
}

// === impl Tracked ===

/// A response body that notes when it handed a frame the client has not taken yet (its reader,
/// hyper, polls again only once the frame is on its way), and holds the request's
/// [`InFlight`] until it ends.
pub struct Tracked<B> {
    inner: B,
    in_flight: InFlight,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self { inner, in_flight }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let stall = &this.in_flight.stall.0;
        stall.store(0, Ordering::Release);
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) && !this.inner.is_end_stream() {
            stall.store(this.in_flight.activity.now_ms() + 1, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Drives `connection` until it ends or a deadline of `activity` passes (then drops it, which
/// closes the socket). The first byte is awaited by the caller (`first_byte`), before hyper
/// is involved.
pub async fn watch<F: Future>(connection: F, activity: Arc<Activity>, limits: &ClientLimits) {
    tokio::pin!(connection);
    loop {
        let (until, _) = activity.deadline(limits);
        tokio::select! {
            _ = &mut connection => return,
            () = tokio::time::sleep_until(until.into()) => {
                if let Some(reason) = activity.overdue(limits) {
                    reason.count();
                    return;
                }
            }
        }
    }
}

/// Waits until `stream` has a byte to read, at most `timeout`; false when it stayed silent or
/// closed. A peek, not `readable()`, which may wake spuriously: the byte stays for hyper.
pub async fn first_byte(stream: &tokio::net::TcpStream, timeout: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(tokio::time::timeout(timeout, stream.peek(&mut byte)).await, Ok(Ok(1..)))
}

// === impl WriteDeadline ===

/// Fails a write to the client that makes no progress for `timeout`: hyper then ends the
/// connection, releasing its buffers, its request's pool slot and the upstream connection.
pub struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// One timer for the connection's life, armed when a write goes pending.
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<T> WriteDeadline<T> {
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self { inner, timeout, timer: Box::pin(tokio::time::sleep(timeout)), armed: false }
    }

    /// Called when the inner write is pending: arms the stall timer (registering the waker
    /// with it, so the write is polled again when it fires) and reports whether it has fired.
    fn stalled_too_long(&mut self, cx: &mut Context<'_>) -> bool {
        if !std::mem::replace(&mut self.armed, true) {
            let due = tokio::time::Instant::now() + self.timeout;
            self.timer.as_mut().reset(due);
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            metrics::counter!("router_connections_closed_total", "reason" => "write_timeout").increment(1);
            return true;
        }
        false
    }
}

fn write_timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading its response")
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T> WriteDeadline<T> {
    /// What a write (or flush) of the inner stream gives back, under the deadline: a pending
    /// one arms the stall timer, or fails once it has fired; a finished one disarms it.
    fn deadlined<R>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match polled {
            Poll::Pending if self.stalled_too_long(cx) => Poll::Ready(Err(write_timed_out())),
            Poll::Pending => Poll::Pending,
            ready => {
                self.armed = false;
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.deadlined(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.deadlined(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.deadlined(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_refuse_past_their_counts_and_free_on_drop() {
        let limits =
            ClientLimits { max_connections: 3, max_connections_per_client: 2, ..ClientLimits::default() };
        let connections = Connections::new(&limits);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = connections.admit(a, true).unwrap();
        let _a2 = connections.admit(a, true).unwrap();
        assert_eq!(connections.admit(a, true).unwrap_err(), Closed::ClientCap);
        let _b1 = connections.admit(b, true).unwrap();
        assert_eq!(connections.admit(b, true).unwrap_err(), Closed::GlobalCap);
        drop(a1);
        let _a3 = connections.admit(a, true).expect("a freed slot is reusable");
        assert_eq!(connections.open(), 3);
    }

    #[test]
    fn a_trusted_proxy_is_held_only_to_the_global_cap() {
        let limits =
            ClientLimits { max_connections: 10, max_connections_per_client: 1, ..ClientLimits::default() };
        let connections = Connections::new(&limits);
        let proxy: IpAddr = "10.0.0.9".parse().unwrap();
        let slots: Vec<_> = (0..5).map(|_| connections.admit(proxy, false).unwrap()).collect();
        assert_eq!(slots.len(), 5);
    }

    #[test]
    fn deadlines_follow_what_the_connection_does() {
        let limits = ClientLimits::default();
        let activity = Activity::new();
        let (_, reason) = activity.deadline(&limits);
        assert_eq!(reason, Closed::Head, "before the first request");
        let in_flight = activity.begin();
        assert_eq!(activity.overdue(&limits), None, "no idle deadline while a request is in flight");
        drop(in_flight);
        let (due, reason) = activity.deadline(&limits);
        assert_eq!(reason, Closed::Idle);
        assert!(due > Instant::now() + limits.idle_timeout - Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_frame_the_client_does_not_take_is_a_write_stall() {
        use http_body_util::BodyExt;
        let limits = ClientLimits { write_timeout: Duration::from_millis(50), ..ClientLimits::default() };
        let activity = Activity::new();
        let frame =
            || Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(bytes::Bytes::from_static(b"a")));
        let chunks = futures_util::stream::iter([frame(), frame()]);
        let mut body = Tracked::new(http_body_util::StreamBody::new(chunks), activity.begin());
        body.frame().await.unwrap().unwrap();
        // The frame was handed and nothing asked for the next: the client is not taking it.
        let (_, reason) = activity.deadline(&limits);
        assert_eq!(reason, Closed::Write);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(activity.overdue(&limits), Some(Closed::Write));
        // Asked for again: no stall.
        body.frame().await.unwrap().unwrap();
        let _ = body.frame().await;
        assert_ne!(activity.overdue(&limits), Some(Closed::Write));
    }
}
