//! The hop scenario: one proxy hop, gateway-router against nginx, in front of the same trivial
//! backend, under the same closed-loop load, taking turns.
//!
//! Taking turns (nginx, router, nginx, router) rather than one block each spreads whatever
//! else the machine is doing over both; each round is reported, then the best of each. Both
//! proxies are set up the way an operator would set them up for speed: nginx with two workers
//! and a keep-alive upstream pool, the router with its per-client rate limit off and one
//! catch-all rule. Neither logs requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio::process::Command;

use super::Settings;
use super::conn;
use super::load::{Figures, Load, Pacing, RequestSpec};
use super::report::{self, Totals};
use crate::procs::{self, Guard, PeakRss, TempDir};

/// Time allowed for a proxy or the backend to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// One measured run of one proxy.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct HopRun {
    /// `nginx` or `router`.
    pub(crate) proxy: &'static str,
    pub(crate) round: u32,
    pub(crate) figures: Figures,
}

/// What the hop scenario found.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct HopReport {
    #[serde(flatten)]
    pub(crate) totals: Totals,
    /// Why the scenario did not run (nginx missing).
    pub(crate) skipped: Option<String>,
    pub(crate) runs: Vec<HopRun>,
    /// The load straight at the backend, no proxy: the ceiling of this load generator and
    /// backend on this machine, against which both proxies' figures are read.
    pub(crate) direct: Option<Figures>,
    pub(crate) best_nginx: Option<Figures>,
    pub(crate) best_router: Option<Figures>,
    /// Router req/s over nginx req/s, best of each.
    pub(crate) router_nginx_ratio: Option<f64>,
    pub(crate) router_p99_within_nginx: Option<bool>,
    /// The router's resident memory, KiB: idle before the load, and its peak.
    pub(crate) router_rss_idle_kib: Option<u64>,
    pub(crate) router_rss_peak_kib: Option<u64>,
}

/// The three processes of the scenario.
struct Hop {
    _dir: TempDir,
    backend: Guard,
    nginx: Guard,
    router: Guard,
    backend_addr: SocketAddr,
    nginx_addr: SocketAddr,
    router_addr: SocketAddr,
}

pub(crate) async fn run(settings: &Settings, router_bin: &Path) -> anyhow::Result<HopReport> {
    report::print_table_head("hop: one proxy hop in front of a trivial backend (closed loop)");
    let Some(nginx_bin) = procs::find_program("nginx") else {
        let why = "nginx is not installed: install it with `apt-get install nginx-light` \
                   (scripts/test.sh does); the hop scenario is skipped";
        println!("  SKIPPED: {why}");
        return Ok(HopReport { skipped: Some(why.into()), ..HopReport::default() });
    };
    let hop = Hop::start(&nginx_bin, router_bin).await?;
    let router_pid = hop.router.pid().unwrap_or(0);
    let router_rss_idle_kib = procs::rss_kib(router_pid);
    let router_peak = PeakRss::watch(router_pid);

    let direct = measure(settings, hop.backend_addr).await?;
    report::print_row("direct to the backend (no proxy)", &direct);
    let mut runs = Vec::new();
    for round in 1..=settings.hop_rounds() {
        for (proxy, addr) in [("nginx", hop.nginx_addr), ("router", hop.router_addr)] {
            let figures = measure(settings, addr).await?;
            report::print_row(&format!("{proxy} round {round}"), &figures);
            runs.push(HopRun { proxy, round, figures });
        }
    }
    let router_rss_peak_kib = Some(router_peak.peak());
    hop.stop().await;
    let report = summarise(runs, router_rss_idle_kib, router_rss_peak_kib);
    let totals = report.totals.add(Totals::of([&direct]));
    Ok(HopReport { totals, direct: Some(direct), ..report })
}

/// One warm-up (not recorded), then the measured load.
async fn measure(settings: &Settings, target: SocketAddr) -> anyhow::Result<Figures> {
    let load = hop_load(settings, target);
    Load { duration: settings.warmup(), ..load.clone() }.run().await?;
    load.run().await
}

/// The same load for both proxies: closed loop, `GET /`.
fn hop_load(settings: &Settings, target: SocketAddr) -> Load {
    let get = RequestSpec {
        method: http::Method::GET,
        path: "/".into(),
        headers: Vec::new(),
        body: bytes::Bytes::new(),
        unique_idempotency_key: false,
    };
    Load {
        target,
        connections: settings.hop_connections(),
        duration: settings.load_duration(),
        pacing: Pacing::Closed { think: Duration::ZERO },
        mixes: vec![vec![get].into()],
    }
}

fn best_of<'a>(runs: &'a [HopRun], proxy: &str) -> Option<&'a Figures> {
    runs.iter().filter(|r| r.proxy == proxy).map(|r| &r.figures).max_by(|a, b| a.rps.total_cmp(&b.rps))
}

fn summarise(
    runs: Vec<HopRun>,
    router_rss_idle_kib: Option<u64>,
    router_rss_peak_kib: Option<u64>,
) -> HopReport {
    let best_nginx = best_of(&runs, "nginx").cloned();
    let best_router = best_of(&runs, "router").cloned();
    let (ratio, p99_within) = match (&best_nginx, &best_router) {
        (Some(nginx), Some(router)) => {
            (Some(router.rps / nginx.rps.max(1e-9)), Some(router.p99_ms <= nginx.p99_ms))
        }
        _ => (None, None),
    };
    if let (Some(nginx), Some(router), Some(ratio)) = (&best_nginx, &best_router, ratio) {
        report::print_row("nginx (best)", nginx);
        report::print_row("router (best)", router);
        println!(
            "  router/nginx req/s: {ratio:.2}×; router p99 {:.2} ms {} nginx p99 {:.2} ms",
            router.p99_ms,
            if router.p99_ms <= nginx.p99_ms { "≤" } else { ">" },
            nginx.p99_ms
        );
    }
    if let (Some(idle), Some(peak)) = (router_rss_idle_kib, router_rss_peak_kib) {
        println!("  router RSS: idle {:.1} MiB, peak {:.1} MiB", report::mib(idle), report::mib(peak));
    }
    HopReport {
        totals: Totals::of(runs.iter().map(|r| &r.figures)),
        skipped: None,
        runs,
        direct: None,
        best_nginx,
        best_router,
        router_nginx_ratio: ratio,
        router_p99_within_nginx: p99_within,
        router_rss_idle_kib,
        router_rss_peak_kib,
    }
}

// === impl Hop ===

impl Hop {
    async fn start(nginx_bin: &Path, router_bin: &Path) -> anyhow::Result<Self> {
        let host = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let dir = TempDir::new("hop")?;
        let backend_addr = SocketAddr::new(host, procs::free_port(host)?);
        let nginx_addr = SocketAddr::new(host, procs::free_port(host)?);
        let router_addr = SocketAddr::new(host, procs::free_port(host)?);
        let router_admin = SocketAddr::new(host, procs::free_port(host)?);

        let mut backend = Command::new(std::env::current_exe()?);
        backend.args(["bench", "backend", "--listen", &backend_addr.to_string()]);
        let mut backend = Guard::spawn("the bench backend", backend, dir.path().join("backend.log"))?;
        wait_answering(&mut backend, backend_addr, "/healthz").await?;

        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, nginx_conf(dir.path(), nginx_addr, backend_addr))?;
        let mut nginx = Command::new(nginx_bin);
        nginx.arg("-p").arg(dir.path()).arg("-c").arg(&conf).arg("-e").arg(dir.path().join("error.log"));
        let mut nginx = Guard::spawn("nginx", nginx, dir.path().join("nginx.log"))?;
        wait_answering(&mut nginx, nginx_addr, "/").await?;

        let router_conf = dir.path().join("router.toml");
        std::fs::write(&router_conf, router_toml(router_addr, router_admin, backend_addr))?;
        anyhow::ensure!(
            router_bin.is_file(),
            "gateway-router not found at {}: build it (`cargo build -p gateway-router`, or --release \
             for a release bench) or pass --router-bin",
            router_bin.display()
        );
        let mut router = Command::new(router_bin);
        router.env("MESH_CONFIG", &router_conf).env("MESH_LOG", "warn").env_remove("REDIS_URL");
        let mut router = Guard::spawn("gateway-router", router, dir.path().join("router.log"))?;
        wait_answering(&mut router, router_admin, "/readyz").await?;
        // Ready means listening; the backend is used once the first probe has passed.
        wait_answering(&mut router, router_addr, "/").await?;
        Ok(Self { _dir: dir, backend, nginx, router, backend_addr, nginx_addr, router_addr })
    }

    async fn stop(self) {
        self.router.stop().await;
        self.nginx.stop().await;
        self.backend.stop().await;
    }
}

/// Waits until `GET path` on `addr` answers 200, failing at once if the process exits.
async fn wait_answering(process: &mut Guard, addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let what = format!("http://{addr}{path} to answer 200");
    let result = procs::wait_until(&what, START_TIMEOUT, || {
        let running = process.ensure_running();
        async move {
            running?;
            Ok(conn::answers_ok(addr, path).await)
        }
    })
    .await;
    result.with_context(|| format!("its output so far:\n{}", process.log_tail()))
}

/// nginx as an operator tunes it for proxying: two workers, a keep-alive upstream pool, no
/// access log, every path inside the scenario's directory.
fn nginx_conf(dir: &Path, listen: SocketAddr, backend: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"worker_processes 2;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream backend {{
        server {backend};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#
    )
}

/// The router with one pool (the backend) and one catch-all rule, per-client rate limit off.
/// Its health probe is the default, `/readyz` every second.
///
/// A config file's `pools` are merged into the default ones (`identity` at 127.0.0.1:8081,
/// `business` at :8082) rather than replacing them, so those two are pointed at the backend as
/// well: no rule sends them anything, and their probes then never touch a `meshctl up` running
/// on the documented ports.
fn router_toml(listen: SocketAddr, admin: SocketAddr, backend: SocketAddr) -> String {
    format!(
        r#"listen = "{listen}"
admin_listen = "{admin}"
rules = [{{ prefix = "/", pool = "backend" }}]

[pools.backend]
instances = ["{backend}"]

[pools.identity]
instances = ["{backend}"]

[pools.business]
instances = ["{backend}"]

[limits]
per_client_rps = 0
"#
    )
}
