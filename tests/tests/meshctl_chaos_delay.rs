//! A delay through the fault layer trips a breaker: `meshctl chaos run` of the shipped
//! slow-orders scenario (both orders replicas answer past the gateways' call deadline) against
//! `meshctl up --processes`; the orders breaker is seen open in `/mesh/status`, and the identity
//! domain loses nothing.

mod support;

use support::processes::{ProcessMesh, scenario};

#[test]
fn meshctl_chaos_delay_past_the_deadline_trips_the_breaker() {
    let mesh = ProcessMesh::start("chaos-delay");
    let run = mesh.chaos(&["run", &scenario("slow-orders.toml")]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the scenario's expectations were not met:\n{said}");
    assert!(said.contains("ok   a breaker of orders opens"), "{said}");
    assert!(said.contains("ok   identity failed <= 0"), "{said}");
    // The router has a fault layer too (tests/tests/router_faults.rs shows what it does).
    let failed = mesh.chaos(&["fail", "router-1", "--rate", "0.01", "--for", "1s"]);
    assert!(failed.status.success(), "{}", String::from_utf8_lossy(&failed.stderr));
    let cleared = mesh.chaos(&["clear", "router-1"]);
    assert!(cleared.status.success(), "{}", String::from_utf8_lossy(&cleared.stderr));
}
