//! The router's API reference page (`/docs`, Swagger UI) in headless Chromium, driven by
//! Playwright (tests/browser/docs-page.mjs): it lists every operation of the live
//! `/openapi.json`, and a "Try it out" call made from the page reaches the mesh. The screenshot
//! is kept as a test artefact (target/test-artifacts/docs-page.png), not in git.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};
use support::{PASSWORD, TestMesh};

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Fails at once, naming the install script, when the browser tools are not installed.
fn assert_browser_tools() {
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run scripts/browser-tools.sh",
        dir.display()
    );
}

/// Runs tests/browser/docs-page.mjs with `options`; its JSON report.
fn drive_docs_page(options: &Value) -> Value {
    let dir = browser_dir();
    let output = Command::new("node")
        .arg(dir.join("docs-page.mjs"))
        .arg(options.to_string())
        .current_dir(&dir)
        .output()
        .expect("node runs (the browser tests need Node.js 20+: scripts/browser-tools.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "docs-page.mjs failed ({}):\n{stderr}\n{stdout}", output.status);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

/// Every (METHOD, path) of an OpenAPI document.
fn operations(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_and_tries_a_call() {
    assert_browser_tools();
    let t = TestMesh::start().await;
    let document = t.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(document.status, 200, "{:?}", document.body);
    let expected = operations(&document.body);
    assert!(expected.contains(&("POST".into(), "/v1/auth/register".into())), "{expected:?}");

    let email = format!("docs-{}@example.com", mesh_core::ids::new_id().to_lowercase());
    let screenshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&screenshot).unwrap();
    let screenshot = screenshot.join("docs-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let options = json!({
        "url": format!("{}/docs", t.base),
        "screenshot": screenshot,
        "try": {
            "method": "post",
            "path": "/v1/auth/register",
            "body": json!({"email": email, "password": PASSWORD, "display_name": "Docs"}).to_string(),
        },
    });
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || drive_docs_page(&options)).await.unwrap();
    println!("browser run {:?}, page timings {}", started.elapsed(), report["timings_ms"]);

    // The page's own headers: the CSP that keeps it on this origin.
    let csp = report["headers"]["content-security-policy"].as_str().unwrap_or("");
    assert!(csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"), "{csp}");
    assert_eq!(report["csp_violations"], json!([]), "the page breaks its own CSP");
    assert_eq!(report["foreign_requests"], json!([]), "the page asked another origin");
    assert_eq!(report["console_errors"], json!([]), "the page logged errors");

    // Every operation of the live document, and nothing else.
    let listed: BTreeSet<(String, String)> = report["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| (op[0].as_str().unwrap_or("").to_owned(), op[1].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(listed.len(), report["operations"].as_array().unwrap().len(), "an operation listed twice");
    assert_eq!(listed, expected, "the page lists other operations than /openapi.json");

    // The call made from the page went to this router and registered the account.
    let tried = &report["tried"];
    assert_eq!(tried["status"], "201", "{tried}");
    let request_url = tried["request_url"].as_str().unwrap();
    assert_eq!(request_url, format!("{}/v1/auth/register", t.base), "{tried}");
    let registered: Value = serde_json::from_str(tried["body"].as_str().unwrap()).expect("JSON shown");
    let tokens = t.login(&email).await;
    let token = tokens.body["access_token"].as_str().unwrap();
    let me = t.call(Method::GET, "/v1/users/me", Some(token), None).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["email"], email.as_str(), "{:?}", me.body);
    assert_eq!(me.body["user_id"], registered["user_id"], "{:?} vs {registered}", me.body);

    // Not on the admin listener, which forwards nothing a "Try it out" would send.
    let admin = t.http.get(format!("{}/docs", t.admin_base)).send().await.unwrap();
    assert_eq!(admin.status(), 404, "the admin listener serves /docs");

    let size = std::fs::metadata(&screenshot).map(|m| m.len()).unwrap_or(0);
    println!("screenshot: {} ({size} bytes)", screenshot.display());
    assert!(size > 30_000, "no real screenshot was written");
    t.mesh.stop().await.unwrap();
}
