//! `meshctl status` against a running mesh: `--json` prints the router's full status document,
//! the table names every pool.

mod support;

use mesh_tests::process::binary;
use support::TestMesh;

fn meshctl_status(admin_base: &str, json: bool) -> String {
    let mut command = std::process::Command::new(binary("meshctl"));
    command.args(["status", "--router", admin_base]);
    if json {
        command.arg("--json");
    }
    let output = command.output().expect("meshctl runs");
    assert!(output.status.success(), "meshctl status failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meshctl_status_json_prints_the_routers_full_status() {
    let t = TestMesh::start().await;
    let admin_base = t.admin_base.clone();
    let printed = tokio::task::spawn_blocking(move || meshctl_status(&admin_base, true)).await.unwrap();
    let view: serde_json::Value = serde_json::from_str(&printed).expect("--json prints JSON");
    let direct: serde_json::Value = t
        .http
        .get(format!("{}/mesh/status?format=json&view=full", t.admin_base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // The same document (counters move between the two reads; the shape and names do not).
    let names = |v: &serde_json::Value, list: &str, key: &str| -> Vec<String> {
        v[list].as_array().into_iter().flatten().map(|p| p[key].as_str().unwrap_or("?").to_owned()).collect()
    };
    assert_eq!(names(&view, "pools", "name"), names(&direct, "pools", "name"));
    assert_eq!(names(&view, "gateways", "instance"), names(&direct, "gateways", "instance"));
    assert_eq!(
        view.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()),
        direct.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
    );
    assert!(names(&view, "pools", "name").contains(&"identity".to_owned()), "{printed}");
    assert!(
        view["gateways"][0]["services"].is_array(),
        "the full view, with each gateway's services: {printed}"
    );

    let admin_base = t.admin_base.clone();
    let table = tokio::task::spawn_blocking(move || meshctl_status(&admin_base, false)).await.unwrap();
    assert!(table.contains("pool identity") && table.contains("pool business"), "{table}");
    t.mesh.stop().await.unwrap();
}
