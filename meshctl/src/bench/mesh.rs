//! The mesh under test: `meshctl up` as a child process, and the API calls that prepare it.
//!
//! The mesh runs in its own process (any `meshctl` binary with `up`, so an older build can be
//! measured against this one in the same run), on a loopback host of its own (`127.0.0.x`, not
//! 127.0.0.1) so it never collides with a `meshctl up` someone already runs on the documented
//! ports. Its users are registered and logged in through the router, like any client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use super::conn::{self, SETUP_BLOCK};
use crate::procs::{self, Guard, TempDir};

/// Every port `meshctl up` listens on with two replicas (docs/ARCHITECTURE.md §7).
const MESH_PORTS: &[u16] = &[
    8080, 8081, 8082, 8181, 8182, 9000, 9080, 50051, 50052, 50053, 50054, 50055, 50056, 50151, 50152, 50153,
    50154, 50155, 50156,
];
/// Time allowed for the mesh to become ready (debug builds on a busy machine are slow).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Password of every bench account.
const PASSWORD: &str = "bench password, long enough";
/// The admin who creates the articles orders are placed on.
pub(crate) const ADMIN_EMAIL: &str = "bench-admin@example.com";
/// The most stock one article may hold (articles' `MAX_STOCK`).
const ARTICLE_STOCK: i64 = 1_000_000;
/// Tries of one set-up call refused for a moment (a busy hashing slot: 503).
const SETUP_ATTEMPTS: u32 = 8;

/// A running `meshctl up` child and where it listens.
#[derive(Debug)]
pub(crate) struct MeshChild {
    guard: Guard,
    host: Ipv4Addr,
    _dir: TempDir,
}

// === impl MeshChild ===

impl MeshChild {
    /// Starts `mesh_bin up` (on the embedded store, or on `redis_url`) and waits until ready.
    pub(crate) async fn start(mesh_bin: &Path, redis_url: Option<&str>) -> anyhow::Result<Self> {
        let host = free_host().context("no loopback host 127.0.0.100-250 has the mesh's ports free")?;
        let dir = TempDir::new("mesh")?;
        let mut command = Command::new(mesh_bin);
        command
            .arg("up")
            .args(["--host", &host.to_string(), "--client-rps", "0", "--free-limit", "1000000000"])
            .args(["--admin-email", ADMIN_EMAIL, "--no-seed"])
            .env_remove("REDIS_URL")
            .env("MESH_LOG", "warn");
        if let Some(url) = redis_url {
            command.args(["--redis-url", url]);
        }
        let guard = Guard::spawn("the mesh (meshctl up)", command, dir.path().join("mesh.log"))?;
        let mut mesh = Self { guard, host, _dir: dir };
        let admin = mesh.admin();
        let guard = &mut mesh.guard;
        procs::wait_until("the mesh's admin /readyz", START_TIMEOUT, || {
            let running = guard.ensure_running();
            async move {
                running?;
                Ok(conn::answers_ok(admin, "/readyz").await)
            }
        })
        .await?;
        Ok(mesh)
    }

    pub(crate) fn router(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.host), 8080)
    }

    /// The whole process's admin (`/metrics` of every component in it).
    pub(crate) fn admin(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.host), 9000)
    }

    pub(crate) fn router_admin(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.host), 9080)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid().unwrap_or(0)
    }

    pub(crate) async fn stop(self) {
        self.guard.stop().await;
    }

    /// The API through the router, for set-up calls.
    pub(crate) fn api(&self) -> Api {
        Api { router: self.router() }
    }
}

/// Set-up calls of the mesh's API, through its router, as any client makes them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Api {
    router: SocketAddr,
}

// === impl Api ===

impl Api {
    /// The API of the router on `router`.
    pub(crate) fn at(router: SocketAddr) -> Self {
        Self { router }
    }

    /// Registers `email` (an existing account is fine) and logs in; the access token.
    pub(crate) async fn user(&self, email: &str, source: Ipv4Addr) -> anyhow::Result<String> {
        let register = json!({"email": email, "password": PASSWORD, "display_name": "Bench"});
        let (status, body) = self.setup(source, Method::POST, "/v1/auth/register", None, register).await?;
        anyhow::ensure!(
            status == StatusCode::CREATED || status == StatusCode::CONFLICT,
            "registering {email}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let login = json!({"email": email, "password": PASSWORD});
        let (status, body) = self.setup(source, Method::POST, "/v1/auth/login", None, login).await?;
        anyhow::ensure!(
            status == StatusCode::OK,
            "logging in {email}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        let answer: Value = serde_json::from_slice(&body)?;
        let token = answer["access_token"].as_str().context("a login answer without access_token")?;
        Ok(token.to_owned())
    }

    /// Creates `count` articles with the most stock allowed (as the admin), so orders never
    /// run out; their ids.
    pub(crate) async fn articles(&self, count: usize) -> anyhow::Result<Vec<String>> {
        let admin = self.user(ADMIN_EMAIL, next_setup_source()).await?;
        let mut ids = Vec::new();
        for n in 0..count {
            let article = json!({"title": format!("Bench article {n}"), "body": "", "price_cents": 100, "stock": ARTICLE_STOCK});
            let (status, body) =
                self.setup(next_setup_source(), Method::POST, "/v1/articles", Some(&admin), article).await?;
            anyhow::ensure!(
                status == StatusCode::CREATED,
                "creating an article: {status} {}",
                String::from_utf8_lossy(&body)
            );
            let answer: Value = serde_json::from_slice(&body)?;
            ids.push(answer["id"].as_str().context("an article without id")?.to_owned());
        }
        Ok(ids)
    }

    /// One set-up call through the router, tried again while it is refused for a moment.
    async fn setup(
        &self,
        source: Ipv4Addr,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> anyhow::Result<(StatusCode, bytes::Bytes)> {
        let mut attempt = 1;
        loop {
            let answer =
                conn::call(self.router, source, method.clone(), path, token, Some(body.clone())).await?;
            let busy =
                answer.0 == StatusCode::SERVICE_UNAVAILABLE || answer.0 == StatusCode::TOO_MANY_REQUESTS;
            if !busy || attempt == SETUP_ATTEMPTS {
                return Ok(answer);
            }
            tokio::time::sleep(Duration::from_millis(100) * attempt).await;
            attempt += 1;
        }
    }
}

/// A source address of the set-up block not used before in this run, so per-address
/// throttles (20 registrations an hour) never see the bench as one client.
pub(crate) fn next_setup_source() -> Ipv4Addr {
    static NEXT: AtomicUsize = AtomicUsize::new(1);
    conn::source_address(SETUP_BLOCK, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A loopback host with every mesh port free, starting from one that depends on this process
/// so two benches at once look at different hosts first.
fn free_host() -> Option<Ipv4Addr> {
    let offset = std::process::id() % 151;
    (0..151)
        .map(|n| Ipv4Addr::new(127, 0, 0, (100 + (offset + n) % 151) as u8))
        .find(|host| procs::ports_free(IpAddr::V4(*host), MESH_PORTS))
}

/// A Redis of the bench's own on a free port, with nothing persisted.
#[derive(Debug)]
pub(crate) struct RedisChild {
    guard: Guard,
    port: u16,
    _dir: TempDir,
}

// === impl RedisChild ===

impl RedisChild {
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let program = procs::find_program("redis-server")
            .context("redis-server is not installed (Debian: apt-get install redis-server)")?;
        let port = procs::free_port(IpAddr::V4(Ipv4Addr::LOCALHOST))?;
        let dir = TempDir::new("redis")?;
        let command = procs::redis_command(&program, IpAddr::V4(Ipv4Addr::LOCALHOST), port, dir.path());
        let guard = Guard::spawn("redis-server", command, dir.path().join("redis.log"))?;
        let mut redis = Self { guard, port, _dir: dir };
        let guard = &mut redis.guard;
        procs::wait_until("redis-server to listen", Duration::from_secs(20), || {
            let running = guard.ensure_running();
            async move {
                running?;
                Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok())
            }
        })
        .await?;
        Ok(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) async fn stop(self) {
        self.guard.stop().await;
    }
}
