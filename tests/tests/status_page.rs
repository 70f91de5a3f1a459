//! The router's status page, rendered by headless Chromium: every instance shows, in the table
//! and in the topology picture with the services each gateway calls; each pool's charts draw
//! the traffic sent; a stopped gateway, and a service without replicas, show as down within a
//! few seconds. The screenshot is kept as a test artefact
//! (target/test-artifacts/status-page.png), not in git.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshctl::Kind;
use reqwest::Method;
use serde_json::Value;
use support::{Setup, TestMesh};

/// Requests of each pool the test sends at least before the first look at the page.
const N: u64 = 20;
/// The router's `status.bucket` here, and how many buckets the traffic spans at least.
const BUCKET: Duration = Duration::from_millis(250);
const SPAN: u64 = 4;

/// The tests of this file share the process's metrics recorder, where both routers count under
/// the same names: one at a time, so the counts one sees moving are its own.
static ONE_MESH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs headless Chromium with the flags this machine needs (no sandbox as root, no network
/// beyond loopback), plus `args`; returns stdout.
fn chromium(profile: &Path, args: &[&str]) -> String {
    let output = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (scripts/test.sh installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `(points, points above zero)` of a pool's chart (`rps`, `errors`, `p99`) in the page's DOM.
fn chart(dom: &str, pool: &str, kind: &str) -> (u64, u64) {
    let card =
        dom.split(&format!("data-pool=\"{pool}\"")).nth(1).unwrap_or_else(|| panic!("no {pool} charts"));
    let attrs =
        card.split(&format!("data-chart=\"{kind}\"")).nth(1).unwrap_or_else(|| panic!("no {kind} chart"));
    let attr = |name: &str| -> u64 {
        let value = attrs.split(&format!("{name}=\"")).nth(1).and_then(|v| v.split('"').next());
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name} on the {pool} {kind} chart"))
    };
    (attr("data-points"), attr("data-nonzero"))
}

/// Answers the router counted for `pool` in `/metrics` (`router_requests_total`, every status).
fn counted(metrics: &str, pool: &str) -> u64 {
    let label = format!("pool=\"{pool}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("router_requests_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Answers in `pool`'s history in the JSON view.
fn recorded(view: &Value, pool: &str) -> u64 {
    let pools = view["pools"].as_array().expect("pools");
    let pool = pools.iter().find(|p| p["name"] == pool).expect("the pool is in the view");
    pool["history"]["buckets"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|b| b["requests"].as_u64().unwrap())
        .sum()
}

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_stopped_gateway_as_down_within_seconds() {
    // The metrics recorder, before the router registers its counters: the history is checked
    // against them.
    let _ = mesh_core::telemetry::metrics_handle();
    let _one = ONE_MESH.lock().await;
    // Short buckets, so the charts of a test's traffic have several points.
    let mut t = TestMesh::start_customised(Setup::default(), |opts, _| {
        opts.configure_router = Arc::new(|cfg: &mut gateway_router::Config| {
            cfg.status.bucket = BUCKET;
            cfg.status.history = Duration::from_secs(60);
        });
    })
    .await;
    let url = format!("{}/mesh/status", t.admin_base);
    // What the metrics counted before this router answered anything (another test's router).
    let scrape = || async {
        t.http.get(format!("{}/metrics", t.admin_base)).send().await.unwrap().text().await.unwrap()
    };
    let before = scrape().await;
    let profile = std::env::temp_dir().join(format!("mesh-chromium-{}", mesh_core::ids::new_id()));
    let dom = |profile: PathBuf, url: String| {
        tokio::task::spawn_blocking(move || {
            chromium(&profile, &["--virtual-time-budget=3000", "--dump-dom", &url])
        })
    };

    // Traffic of both pools, so each has a history to chart: at least N requests each, until
    // they span SPAN buckets.
    let (_, token, _) = t.user("status@example.com").await;
    let json = |url: String| async { t.http.get(url).send().await.unwrap().json::<Value>().await.unwrap() };
    let spanned = |view: &Value, pool: &str| {
        let pool = view["pools"].as_array().unwrap().iter().find(|p| p["name"] == pool).unwrap().clone();
        pool["history"]["buckets"].as_array().unwrap().iter().filter(|b| b["requests"] != 0).count() as u64
    };
    let mut sent = 0;
    let view = loop {
        assert_eq!(t.call(Method::GET, "/v1/users/me", Some(&token), None).await.status, 200);
        t.call(Method::GET, "/v1/articles", Some(&token), None).await;
        sent += 1;
        let view = json(format!("{url}?format=json")).await;
        if sent >= N && spanned(&view, "identity") >= SPAN && spanned(&view, "business") >= SPAN {
            break view;
        }
    };
    // The history counts every answer the metrics count (no bucket has been reused yet).
    let metrics = scrape().await;
    for pool in ["identity", "business"] {
        let (recorded, counted) = (recorded(&view, pool), counted(&metrics, pool) - counted(&before, pool));
        println!("{pool}: {recorded} answers in the history, {counted} in router_requests_total");
        assert!(recorded >= N, "{pool}: {recorded} answers in the history, {N} sent");
        assert_eq!(recorded, counted, "{pool}: the history and the metrics disagree");
    }

    let first = dom(profile.clone(), url.clone()).await.unwrap();
    assert!(first.contains("pool identity") && first.contains("pool business"), "{first}");
    assert_eq!(first.matches("data-state=\"up\"").count(), 4, "every gateway instance up: {first}");
    // The topology: each gateway instance, up, and each service its gateways call.
    for kind in [Kind::IdentityGateway, Kind::BusinessGateway] {
        for replica in 1..=2 {
            let addr = t.mesh.get(kind, replica).addr;
            let node = format!("data-topo-instance=\"{addr}\" data-topo-state=\"up\"");
            assert!(first.contains(&node), "{addr} is not in the topology as up: {first}");
        }
    }
    for (pool, services) in [
        ("identity", &["auth", "user", "quota"][..]),
        ("business", &["auth", "quota", "orders", "articles", "analytics"]),
    ] {
        for service in services {
            let node = format!("data-topo-service=\"{service}\" data-topo-pool-of=\"{pool}\"");
            assert!(first.contains(&node), "{service} is not in the {pool} topology: {first}");
        }
    }
    assert!(first.contains("data-breaker=\"closed\""), "no breaker state on the topology's edges");
    // The charts: each pool's req/s and p99 series hold the traffic just sent.
    for pool in ["identity", "business"] {
        for kind in ["rps", "p99"] {
            let (points, nonzero) = chart(&first, pool, kind);
            assert!(
                points >= SPAN && nonzero >= SPAN,
                "{pool} {kind}: {points} points, {nonzero} above zero"
            );
        }
        let (points, _) = chart(&first, pool, "errors");
        assert!(points >= 1, "{pool}: no error-rate series");
    }

    let victim = t.mesh.get(Kind::IdentityGateway, 1).addr;
    t.mesh.get_mut(Kind::IdentityGateway, 1).stop().await.unwrap();
    let stopped = Instant::now();
    let down = format!("data-instance=\"{victim}\" data-state=\"down\"");
    let drawn_down = format!("data-topo-instance=\"{victim}\" data-topo-state=\"down\"");
    let mut shown = None;
    while stopped.elapsed() < Duration::from_secs(15) {
        let page = dom(profile.clone(), url.clone()).await.unwrap();
        if page.contains(&down) {
            assert!(page.contains(&drawn_down), "down in the table, not in the topology: {page}");
            shown = Some(stopped.elapsed());
            break;
        }
    }
    let shown = shown.expect("the stopped gateway never showed as down");
    println!("stopped gateway shown as down {shown:?} after it stopped (including Chromium's start)");
    assert!(shown < Duration::from_secs(10), "{shown:?}");

    // A fallback answer shows on its gateway's card: a profile read, then served from the
    // cache once the user service is gone.
    assert_eq!(t.call(reqwest::Method::GET, "/v1/users/me", Some(&token), None).await.status, 200);
    t.mesh.get_mut(Kind::User, 1).stop().await.unwrap();
    t.mesh.get_mut(Kind::User, 2).stop().await.unwrap();
    let cached = t.call(reqwest::Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(cached.header("x-mesh-fallback"), "cache");
    let users_stopped = Instant::now();
    let page = dom(profile.clone(), url.clone()).await.unwrap();
    assert!(page.contains("data-fallbacks=\"1\""), "the fallback is not on the page: {page}");
    assert!(page.contains("<th>p99</th>"), "no p99 column");
    // The user service, without a replica, is drawn down: its gateway's health watch misses a
    // keep-alive ping (`health_keepalive`, 1s, and as long again) at worst, and the page asks
    // every 2 s.
    let user_down = "data-topo-service=\"user\" data-topo-pool-of=\"identity\" data-topo-state=\"down\"";
    let mut page = page;
    while !page.contains(user_down) && users_stopped.elapsed() < Duration::from_secs(15) {
        page = dom(profile.clone(), url.clone()).await.unwrap();
    }
    let drawn = users_stopped.elapsed();
    println!("the user service drawn down {drawn:?} after its replicas stopped (including Chromium's start)");
    assert!(page.contains(user_down), "the user service is not drawn down: {page}");
    assert!(drawn < Duration::from_secs(10), "{drawn:?}");

    let screenshot = artefacts().join("status-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = format!("--screenshot={}", screenshot.display());
    let (p, u) = (profile.clone(), url.clone());
    tokio::task::spawn_blocking(move || {
        chromium(&p, &["--virtual-time-budget=3000", "--window-size=1100,900", &shot, &u])
    })
    .await
    .unwrap();
    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    println!("screenshot: {} ({size} bytes)", screenshot.display());
    assert!(size > 10_000, "no real screenshot was written");
    let _ = std::fs::remove_dir_all(profile);
    t.mesh.stop().await.unwrap();
}

/// A service whose every read fails (a corrupt stored profile: the user service answers
/// INTERNAL, which the gateways' breakers count) has a breaker opened, and the topology marks it
/// on the service and on that gateway's edge to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_marks_an_open_breaker() {
    let _one = ONE_MESH.lock().await;
    let store = Arc::new(std::sync::Mutex::new(None));
    let seen = store.clone();
    let t = TestMesh::start_customised(Setup::default(), move |opts, _| {
        *seen.lock().unwrap() = Some(opts.store.clone());
        // Open long enough to be rendered however slowly Chromium starts.
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| {
            cfg.services.user.breaker.open_for = Duration::from_secs(60);
        });
    })
    .await;
    let (user_id, token, _) = t.user("breaker@example.com").await;
    let cfg = store.lock().unwrap().clone().unwrap();
    let raw = mesh_core::store::Store::connect(&cfg).await.unwrap();
    raw.set(&format!("user:profile:{user_id}"), "{not json", None).await.unwrap();

    // Reads until an identity gateway's breaker for the user service is open: after
    // `breaker.consecutive_failures` (5) failures on one gateway, however the router spreads
    // them (it favours the faster instance, so one gateway may take nearly all).
    let url = format!("{}/mesh/status", t.admin_base);
    let open_on = |view: &Value| {
        let gateways = view["gateways"].as_array().cloned().unwrap_or_default();
        gateways
            .iter()
            .filter(|g| g["pool"] == "identity")
            .filter(|g| {
                let services = g["services"].as_array().cloned().unwrap_or_default();
                services.iter().any(|s| s["name"] == "user" && s["breaker"] == "open")
            })
            .filter_map(|g| g["addr"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    };
    let mut reads = 0;
    let opened = loop {
        let answer = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
        assert!(matches!(answer.status.as_u16(), 500 | 503), "{:?}", answer.body);
        reads += 1;
        let view: Value =
            t.http.get(format!("{url}?format=json&view=full")).send().await.unwrap().json().await.unwrap();
        let open = open_on(&view);
        if !open.is_empty() {
            break open;
        }
        assert!(reads < 40, "no breaker opened: {view}");
    };
    println!("the user service's breaker open on {opened:?} after {reads} reads");

    let profile = std::env::temp_dir().join(format!("mesh-chromium-{}", mesh_core::ids::new_id()));
    let (p, u) = (profile.clone(), url.clone());
    let page =
        tokio::task::spawn_blocking(move || chromium(&p, &["--virtual-time-budget=3000", "--dump-dom", &u]))
            .await
            .unwrap();
    for gateway in &opened {
        let edge = format!("data-topo-edge=\"{gateway}→user\" data-breaker=\"open\"");
        assert!(page.contains(&edge), "no open breaker on {gateway}'s edge to user: {page}");
    }
    assert!(page.contains("data-breaker-mark=\"open\""), "the user service is not marked: {page}");
    // Down when every gateway's breaker is open, degraded when some are.
    let state = if opened.len() == 2 { "down" } else { "warn" };
    let user =
        format!("data-topo-service=\"user\" data-topo-pool-of=\"identity\" data-topo-state=\"{state}\"");
    assert!(page.contains(&user), "the user service is not drawn {state}: {page}");
    let _ = std::fs::remove_dir_all(profile);
    t.mesh.stop().await.unwrap();
}
