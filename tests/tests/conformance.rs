//! The API against its own OpenAPI document, by schemathesis: every operation of the router's
//! merged document, with generated valid and invalid requests, boundary cases (the coverage
//! phase) and chains of calls along the document's links (the stateful phase), authenticated
//! as a real session, on a mesh over a real redis-server. Every check is on (`--checks all`):
//! a schema-valid request refused, an invalid one accepted, an undocumented status, header or
//! content type, a body not of its schema, a wrong answer to an undeclared method, a server
//! error: each is a finding, and the test wants none. A finding is fixed in the code or in
//! the contract (services/gateway/src/openapi/contract.rs), never silenced here.
//!
//! schemathesis comes from PyPI, pinned, in the virtualenv scripts/validate-deploy.sh keeps
//! (`DEPLOY_VENV`). The seed is fixed (`CONFORMANCE_SEED` to change it) and printed.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use support::{ADMIN_EMAIL, PASSWORD, Setup, TestMesh};

/// The schemathesis the deploy validator's virtualenv holds.
fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("DEPLOY_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("mesh/deploy-venv")
    });
    let st = venv.join("bin/st");
    assert!(
        st.exists(),
        "schemathesis is not installed at {}: run scripts/validate-deploy.sh (scripts/test.sh does), \
         which installs it with the deploy tools",
        st.display()
    );
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_conforms_to_its_openapi() {
    let st = schemathesis();
    let t = TestMesh::start_customised(Setup::default(), |opts, _| {
        opts.configure_gateway = Arc::new(|cfg: &mut gateway::Config| {
            // The run reads every stream; one that never ends would be a timeout per case.
            cfg.streams.max_duration = Duration::from_secs(1);
        });
    })
    .await;
    // The admin, so creating articles is tried for real, and some articles to order.
    let (_, token, _) = t.user(ADMIN_EMAIL).await;
    // The contract's login example (ada@example.com, the harness's password) is a real account.
    t.user("ada@example.com").await;
    for n in 0..3 {
        t.article(&token, &format!("Tea {n}"), 450, 1_000_000).await;
    }
    assert_eq!(t.call(Method::GET, "/openapi.json", None, None).await.status, 200);

    let seed = std::env::var("CONFORMANCE_SEED").unwrap_or_else(|_| "1".into());
    let hooks = Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance/hooks.py");
    let report = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts/schemathesis");
    let _ = std::fs::remove_dir_all(&report);
    std::fs::create_dir_all(&report).unwrap();
    let (base, st_bin, report_dir) = (t.base.clone(), st.clone(), report.clone());
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(st_bin)
            .args(["run", &format!("{base}/openapi.json"), "--checks", "all", "--seed", &seed])
            .args(["--max-examples", "30", "--workers", "2", "--request-timeout", "10"])
            .args(["--no-color", "--generation-database", "none", "--report", "junit", "--report-dir"])
            .arg(&report_dir)
            // Its caches land in the working directory: keep them out of the source tree.
            .current_dir(report_dir.parent().unwrap_or(Path::new(".")))
            .env("SCHEMATHESIS_HOOKS", hooks)
            .env("MESH_URL", &base)
            .env("MESH_EMAIL", ADMIN_EMAIL)
            .env("MESH_PASSWORD", PASSWORD)
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    println!("{text}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!("schemathesis ran {:?}; report under {}", started.elapsed(), report.display());
    let summary = text.lines().find(|l| l.contains(" generated")).unwrap_or("no summary line");
    println!("figures: {summary}");
    assert!(text.contains("Tested: 22"), "every operation must be tested");
    let only_refused =
        text.split("Authentication failed").nth(1).unwrap_or("").split("💡").next().unwrap_or("");
    assert!(!only_refused.contains("/v1/users/me"), "the run must be authenticated: {only_refused}");
    assert!(
        output.status.success() && !text.contains("FAILURES"),
        "schemathesis found that the API and its document disagree (above); fix the code or the contract"
    );
}
