//! The router's status page, rendered by headless Chromium: every instance shows, and a stopped
//! gateway shows as down within a few seconds. The screenshot is kept as a test artefact
//! (target/test-artifacts/status-page.png), not in git.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use meshctl::Kind;
use support::TestMesh;

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

fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_stopped_gateway_as_down_within_seconds() {
    let mut t = TestMesh::start().await;
    let url = format!("{}/mesh/status", t.admin_base);
    let profile = std::env::temp_dir().join(format!("mesh-chromium-{}", mesh_core::ids::new_id()));
    let dom = |profile: PathBuf, url: String| {
        tokio::task::spawn_blocking(move || {
            chromium(&profile, &["--virtual-time-budget=3000", "--dump-dom", &url])
        })
    };

    let first = dom(profile.clone(), url.clone()).await.unwrap();
    assert!(first.contains("pool identity") && first.contains("pool business"), "{first}");
    assert_eq!(first.matches("data-state=\"up\"").count(), 4, "every gateway instance up: {first}");

    let victim = t.mesh.get(Kind::IdentityGateway, 1).addr;
    t.mesh.get_mut(Kind::IdentityGateway, 1).stop().await.unwrap();
    let stopped = Instant::now();
    let down = format!("data-instance=\"{victim}\" data-state=\"down\"");
    let mut shown = None;
    while stopped.elapsed() < Duration::from_secs(15) {
        if dom(profile.clone(), url.clone()).await.unwrap().contains(&down) {
            shown = Some(stopped.elapsed());
            break;
        }
    }
    let shown = shown.expect("the stopped gateway never showed as down");
    println!("stopped gateway shown as down {shown:?} after it stopped (including Chromium's start)");
    assert!(shown < Duration::from_secs(10), "{shown:?}");

    // A fallback answer shows on its gateway's card: a profile read, then served from the
    // cache once the user service is gone.
    let (_, token, _) = t.user("status@example.com").await;
    assert_eq!(t.call(reqwest::Method::GET, "/v1/users/me", Some(&token), None).await.status, 200);
    t.mesh.get_mut(Kind::User, 1).stop().await.unwrap();
    t.mesh.get_mut(Kind::User, 2).stop().await.unwrap();
    let cached = t.call(reqwest::Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(cached.header("x-mesh-fallback"), "cache");
    let page = dom(profile.clone(), url.clone()).await.unwrap();
    assert!(page.contains("data-fallbacks=\"1\""), "the fallback is not on the page: {page}");
    assert!(page.contains("<th>p99</th>"), "no p99 column");

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
