//! One HTTP/1.1 client connection, from a loopback source address of its own.
//!
//! Each connection binds its own `127.a.b.c` before it connects, so each plays a different
//! client: the router caps connections per client address (256) and the gateways throttle
//! registrations per address, and honest load from many clients must not look like one client
//! abusing them. Only loopback targets are accepted: the bench never loads another machine.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;

/// Source addresses of load connections: connection `i` is `127.LOAD.x.y`.
pub(crate) const LOAD_BLOCK: u8 = 100;
/// Source addresses of set-up requests (registrations, logins, scrapes).
pub(crate) const SETUP_BLOCK: u8 = 101;

/// The `index`-th source address of `block`: `127.block.hi.lo`, `lo` in 1..=254.
pub(crate) fn source_address(block: u8, index: usize) -> Ipv4Addr {
    let hi = (index / 254) % 256;
    let lo = index % 254 + 1;
    Ipv4Addr::new(127, block, hi as u8, lo as u8)
}

/// Refuses anything but a loopback target.
pub(crate) fn ensure_loopback(target: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(target.ip().is_loopback(), "the bench loads loopback addresses only, not {target}");
    Ok(())
}

/// Why a request got no usable answer.
#[derive(Debug)]
pub(crate) enum Failure {
    Connect(std::io::Error),
    Io(hyper::Error),
    /// The server closed the connection before the whole answer came.
    Closed,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::Io(e) => write!(f, "connection failed: {e}"),
            Self::Closed => f.write_str("the server closed the connection before the whole answer"),
        }
    }
}

impl std::error::Error for Failure {}

/// hyper's half of a connection that reads and writes the socket.
type Connection = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

/// An open HTTP/1.1 connection; one request at a time.
///
/// The connection's I/O is driven in the task that sends on it, not in a task of its own:
/// every request then costs no wake-up of another task (on another thread), which is CPU the
/// measured server would otherwise lose on a shared machine.
pub(crate) struct Conn {
    sender: SendRequest<Full<Bytes>>,
    connection: Connection,
    closed: bool,
    host: HeaderValue,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("host", &self.host).field("closed", &self.closed).finish()
    }
}

// === impl Conn ===

impl Conn {
    /// Connects from `source` to the loopback `target` within `timeout`.
    pub(crate) async fn open(
        target: SocketAddr,
        source: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let connect = async {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
            let stream = socket.connect(target).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(Failure::Connect(e)),
            Err(_) => return Err(Failure::Connect(std::io::ErrorKind::TimedOut.into())),
        };
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(Failure::Io)?;
        let host = HeaderValue::from_str(&target.to_string()).expect("an address is a valid header value");
        Ok(Self { sender, connection: Box::pin(connection), closed: false, host })
    }

    /// Whether another request can go on this connection: the server may have closed it after
    /// the last answer (a keep-alive limit), which is seen by driving the connection once.
    pub(crate) async fn is_open(&mut self) -> bool {
        if !self.closed {
            tokio::select! {
                biased;
                _ = self.connection.as_mut() => self.closed = true,
                _ = std::future::ready(()) => {}
            }
        }
        !self.closed && !self.sender.is_closed()
    }

    /// Sends `request` (its `Host` filled in) and reads the whole answer.
    pub(crate) async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, Failure> {
        request.headers_mut().insert(HOST, self.host.clone());
        if self.closed {
            return Err(Failure::Closed);
        }
        let Self { sender, connection, closed, .. } = self;
        let exchange = async {
            sender.ready().await?;
            let (parts, body) = sender.send_request(request).await?.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Response::from_parts(parts, body))
        };
        tokio::select! {
            biased;
            answer = exchange => answer.map_err(Failure::Io),
            _ = connection.as_mut() => {
                *closed = true;
                Err(Failure::Closed)
            }
        }
    }
}

/// A set-up request: one fresh connection from `source`, one request, its status and body.
pub(crate) async fn call(
    target: SocketAddr,
    source: Ipv4Addr,
    method: Method,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    ensure_loopback(target)?;
    let mut request = Request::builder().method(method.clone()).uri(path);
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match json {
        Some(json) => {
            request = request.header(CONTENT_TYPE, "application/json");
            Bytes::from(json.to_string())
        }
        None => Bytes::new(),
    };
    let request = request.body(Full::new(body))?;
    let describe = || format!("{method} http://{target}{path}");
    let mut conn = Conn::open(target, source, Duration::from_secs(5)).await.with_context(describe)?;
    let response = tokio::time::timeout(Duration::from_secs(30), conn.send(request))
        .await
        .with_context(|| format!("{}: no answer in 30s", describe()))?
        .with_context(describe)?;
    Ok((response.status(), response.into_body()))
}

/// `GET path` from the set-up block answers 200.
pub(crate) async fn answers_ok(target: SocketAddr, path: &str) -> bool {
    let source = source_address(SETUP_BLOCK, 0);
    matches!(call(target, source, Method::GET, path, None, None).await, Ok((StatusCode::OK, _)))
}
