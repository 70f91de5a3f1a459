//! The chain scenario: the whole mesh (router → gateway → gRPC services → store), once on the
//! embedded store and once on Redis, each route on its own.
//!
//! Per route and connection count: a closed loop for throughput, then an open loop at half the
//! throughput it found, for latency without coordinated omission. The mesh process's memory is
//! read idle, at its peak during the loads and a few seconds after them; the mesh's own
//! metrics, scraped around each route, say which hop the time went to.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use serde::Serialize;

use super::Settings;
use super::load::{Figures, Load, Mix, Pacing, RequestSpec};
use super::mesh::{MeshChild, RedisChild, next_setup_source};
use super::metrics::{self, Exposition, HopTime};
use super::report::{self, Totals};
use crate::procs::PeakRss;

/// Articles orders are spread over, each with the most stock allowed.
const ORDER_ARTICLES: usize = 4;

/// One route's runs on one store.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct RouteReport {
    pub(crate) route: &'static str,
    pub(crate) runs: Vec<Figures>,
    /// Where its time went (differences of the mesh's metrics around its runs).
    pub(crate) breakdown: Vec<HopTime>,
}

/// Resident memory of the mesh process, KiB.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Rss {
    pub(crate) idle_kib: u64,
    pub(crate) peak_kib: u64,
    pub(crate) after_kib: u64,
}

/// One store's run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct StoreReport {
    /// `embedded` or `redis`.
    pub(crate) store: &'static str,
    pub(crate) routes: Vec<RouteReport>,
    pub(crate) rss: Rss,
}

/// What the chain scenario found.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ChainReport {
    #[serde(flatten)]
    pub(crate) totals: Totals,
    pub(crate) stores: Vec<StoreReport>,
}

pub(crate) async fn run(settings: &Settings, mesh_bin: &Path) -> anyhow::Result<ChainReport> {
    let embedded = run_store(settings, mesh_bin, None).await?;
    let redis = RedisChild::start().await?;
    let on_redis = run_store(settings, mesh_bin, Some(&redis.url())).await;
    redis.stop().await;
    let stores = vec![embedded, on_redis?];
    let totals = Totals::of(stores.iter().flat_map(|s| s.routes.iter().flat_map(|r| r.runs.iter())));
    Ok(ChainReport { totals, stores })
}

async fn run_store(
    settings: &Settings,
    mesh_bin: &Path,
    redis_url: Option<&str>,
) -> anyhow::Result<StoreReport> {
    let store = if redis_url.is_some() { "redis" } else { "embedded" };
    report::print_table_head(&format!("chain: every route through the router, {store} store"));
    let mesh = MeshChild::start(mesh_bin, redis_url).await?;
    let articles = mesh.api().articles(ORDER_ARTICLES).await?;
    let token = mesh.api().user("bench-user@example.com", next_setup_source()).await?;
    let admins = [mesh.admin(), mesh.router_admin()];

    let idle_kib = crate::procs::rss_kib(mesh.pid()).unwrap_or(0);
    let peak = PeakRss::watch(mesh.pid());
    let mut routes = Vec::new();
    for (route, mix) in route_mixes(&token, &articles) {
        let before = Exposition::scrape(&admins).await;
        let mut runs = Vec::new();
        for connections in settings.chain_connections() {
            for figures in closed_then_open(settings, mesh.router(), connections, &mix).await? {
                report::print_row(&format!("{route} {}", figures.pacing), &figures);
                runs.push(figures);
            }
        }
        let breakdown = Exposition::scrape(&admins).await.breakdown_since(&before);
        routes.push(RouteReport { route, runs, breakdown });
    }
    let peak_kib = peak.peak();
    tokio::time::sleep(settings.settle()).await;
    let after_kib = crate::procs::rss_kib(mesh.pid()).unwrap_or(0);
    let rss = Rss { idle_kib, peak_kib, after_kib };
    println!(
        "  mesh RSS: idle {:.1} MiB, peak {:.1} MiB, {:?} after the load {:.1} MiB",
        report::mib(rss.idle_kib),
        report::mib(rss.peak_kib),
        settings.settle(),
        report::mib(rss.after_kib)
    );
    for route in &routes {
        metrics::print_breakdown(
            &format!("where the time went: {} ({store})", route.route),
            &route.breakdown,
        );
    }
    mesh.stop().await;
    Ok(StoreReport { store, routes, rss })
}

/// A closed loop, then an open loop at half the rate it reached.
async fn closed_then_open(
    settings: &Settings,
    router: SocketAddr,
    connections: usize,
    mix: &Mix,
) -> anyhow::Result<[Figures; 2]> {
    let load = Load {
        target: router,
        connections,
        duration: settings.load_duration(),
        pacing: Pacing::Closed { think: Duration::ZERO },
        mixes: vec![mix.clone()],
    };
    let closed = load.clone().run().await?;
    let rate = (closed.rps / 2.0).max(1.0);
    let open = Load { pacing: Pacing::Open { rate }, ..load }.run().await?;
    Ok([closed, open])
}

/// The routes driven, each with its request mix, as one user.
fn route_mixes(token: &str, articles: &[String]) -> Vec<(&'static str, Mix)> {
    let auth = HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is a valid header value");
    let get = |path: &str| vec![request(Method::GET, path, &auth, Bytes::new(), false)].into();
    let orders: Vec<RequestSpec> = articles
        .iter()
        .map(|id| {
            let body = serde_json::json!({"items": [{"article_id": id, "quantity": 1}]}).to_string();
            request(Method::POST, "/v1/orders", &auth, Bytes::from(body), true)
        })
        .collect();
    vec![
        ("GET /v1/users/me", get("/v1/users/me")),
        ("GET /v1/articles", get("/v1/articles")),
        ("GET /v1/dashboard", get("/v1/dashboard")),
        ("POST /v1/orders", orders.into()),
    ]
}

/// An authenticated request; a body is JSON.
pub(crate) fn request(
    method: Method,
    path: &str,
    auth: &HeaderValue,
    body: Bytes,
    keyed: bool,
) -> RequestSpec {
    let mut headers = vec![(AUTHORIZATION, auth.clone())];
    if !body.is_empty() {
        headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
    }
    RequestSpec { method, path: path.into(), headers, body, unique_idempotency_key: keyed }
}
