//! The operator's chaos, end to end: `meshctl up --processes`, then `meshctl chaos run` of the
//! shipped kill-a-gateway scenario (SIGKILL identity-gw-1 under load, restart it): no request
//! is lost, and the router is seen to eject the dead gateway and admit it again.

mod support;

use support::processes::{ProcessMesh, scenario};

#[test]
fn meshctl_chaos_kill_under_load_loses_no_request() {
    let mesh = ProcessMesh::start("chaos-kill");
    let run = mesh.chaos(&["run", &scenario("kill-a-gateway.toml")]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the scenario's expectations were not met:\n{said}");
    assert!(said.contains("verdict: PASS"), "{said}");
    assert!(said.contains("ok   failed <= 0"), "{said}");
    assert!(said.contains("ok   identity-gw-1 taken out"), "{said}");
    assert!(said.contains("ok   identity-gw-1 back in"), "{said}");
}
