//! `meshctl bench --short` as the suite runs it: every scenario (hop, chain, ladder) completes
//! and no request fails. It prints the figures and asserts nothing about speed: a debug build
//! on a shared machine measures the machine, not the mesh.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

#[test]
fn bench_short_mode_runs_every_scenario_without_errors() {
    let meshctl = PathBuf::from(env!("CARGO_BIN_EXE_meshctl"));
    let router = meshctl.with_file_name("gateway-router");
    assert!(
        router.is_file(),
        "gateway-router is not built beside {}: build every binary first \
         (`cargo build --workspace --bins`, as scripts/test.sh does)",
        meshctl.display()
    );
    let dir = std::env::temp_dir().join(format!("meshctl-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temp dir");
    let json = dir.join("bench.json");

    let output = Command::new(&meshctl)
        .args(["bench", "all", "--short", "--json"])
        .arg(&json)
        .arg("--svg-dir")
        .arg(&dir)
        .output()
        .expect("running meshctl bench");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "meshctl bench all --short failed: {}", output.status);

    let report = read_report(&json);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(why) = report["scenarios"]["hop"]["skipped"].as_str() {
        panic!("the hop scenario was skipped ({why}); scripts/test.sh installs nginx when it is missing");
    }
    for scenario in ["hop", "chain", "ladder"] {
        let figures = &report["scenarios"][scenario];
        let requests = figures["requests"].as_u64().unwrap_or(0);
        let errors = figures["errors"].as_u64();
        assert!(requests > 0, "{scenario}: no request was sent: {figures}");
        assert_eq!(
            errors,
            Some(0),
            "{scenario}: {errors:?} of {requests} requests failed (see the table above)"
        );
    }
}

fn read_report(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}
