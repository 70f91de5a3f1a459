//! What the mesh saw: the router's `/mesh/status?format=json&view=full`, read as which gateway
//! instances are out of their pool, which services are short of replicas and which breakers
//! are not closed, in each gateway's view.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::state::{Instance, MeshState};

/// The router's status, fetched.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot(pub(crate) Value);

/// Reads the router's status (None when it does not answer: the router is down).
pub(crate) async fn fetch(client: &reqwest::Client, router_admin: SocketAddr) -> Option<Snapshot> {
    let url = format!("http://{router_admin}/mesh/status?format=json&view=full");
    let response = client.get(url).send().await.ok()?.error_for_status().ok()?;
    response.json().await.ok().map(Snapshot)
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("a plain HTTP client builds")
}

fn is_gateway(kind: &str) -> bool {
    kind == "identity-gw" || kind == "business-gw"
}

fn is_service(kind: &str) -> bool {
    matches!(kind, "auth" | "user" | "quota" | "orders" | "articles" | "analytics")
}

// === impl Snapshot ===

impl Snapshot {
    fn instances(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0["pools"].as_array().into_iter().flatten().flat_map(|pool| {
            let name = pool["name"].as_str().unwrap_or("?");
            pool["instances"].as_array().into_iter().flatten().map(move |i| (name, i))
        })
    }

    fn services(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0["gateways"].as_array().into_iter().flatten().flat_map(|gateway| {
            let name = gateway["instance"].as_str().unwrap_or("?");
            gateway["services"].as_array().into_iter().flatten().map(move |s| (name, s))
        })
    }

    /// Whether the router keeps this gateway instance out of its pool.
    pub(crate) fn ejected(&self, addr: SocketAddr) -> bool {
        self.instances().any(|(_, i)| i["addr"] == addr.to_string() && i["healthy"] == false)
    }

    /// Whether any gateway sees `service` short of its `replicas` or its breaker not closed.
    pub(crate) fn service_degraded(&self, service: &str, replicas: usize) -> bool {
        self.services().any(|(_, s)| {
            s["name"] == service
                && (s["healthy_replicas"].as_u64().unwrap_or(0) < replicas as u64 || s["breaker"] != "closed")
        })
    }

    /// Whether any gateway's breaker of `service` is open (or half-open).
    pub(crate) fn breaker_open(&self, service: &str) -> bool {
        self.services().any(|(_, s)| s["name"] == service && s["breaker"] != "closed")
    }

    /// Whether the mesh shows `target` hurt: a gateway out of its pool, a service short of a
    /// replica or behind a breaker. Redis and the router do not show here (None).
    pub(crate) fn affected(&self, target: &Instance, state: &MeshState) -> Option<bool> {
        if is_gateway(&target.kind) {
            Some(self.ejected(target.addr))
        } else if is_service(&target.kind) {
            Some(self.service_degraded(&target.kind, state.replicas(&target.kind)))
        } else {
            None
        }
    }

    /// Ejections, fallbacks and breakers, as lines for the terminal.
    pub(crate) fn summary(&self, state: &MeshState) -> String {
        let mut out = String::new();
        for pool in self.0["pools"].as_array().into_iter().flatten() {
            let out_of_pool: Vec<String> = pool["instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["healthy"] == false)
                .map(|i| {
                    let addr = i["addr"].as_str().unwrap_or("?");
                    let name =
                        state.instances.iter().find(|s| s.addr.to_string() == addr).map(|s| s.name.as_str());
                    let ejected = i["ejected_for_ms"].as_u64().unwrap_or(0);
                    let how = if ejected > 0 { format!("ejected for {ejected} ms") } else { "down".into() };
                    format!("{} ({addr}) {how}", name.unwrap_or("?"))
                })
                .collect();
            let _ = write!(
                out,
                "  pool {:<9} {}/{} healthy",
                pool["name"].as_str().unwrap_or("?"),
                pool["healthy_instances"].as_u64().unwrap_or(0),
                pool["instances"].as_array().map_or(0, Vec::len),
            );
            if !out_of_pool.is_empty() {
                let _ = write!(out, "; out: {}", out_of_pool.join(", "));
            }
            out.push('\n');
        }
        let mut troubled = Vec::new();
        for (gateway, s) in self.services() {
            let name = s["name"].as_str().unwrap_or("?");
            let healthy = s["healthy_replicas"].as_u64().unwrap_or(0);
            let replicas = state.replicas(name);
            let breaker = s["breaker"].as_str().unwrap_or("?");
            if breaker != "closed" || healthy < replicas as u64 {
                troubled
                    .push(format!("{gateway} sees {name} {healthy}/{replicas} healthy, breaker {breaker}"));
            }
        }
        if troubled.is_empty() {
            out.push_str("  services: every replica healthy, every breaker closed\n");
        } else {
            for line in troubled {
                let _ = writeln!(out, "  {line}");
            }
        }
        let (mut cache, mut degraded, mut queued) = (0, 0, 0);
        for gateway in self.0["gateways"].as_array().into_iter().flatten() {
            let f = &gateway["fallbacks"];
            cache += f["cache"].as_u64().unwrap_or(0);
            degraded += f["degraded"].as_u64().unwrap_or(0);
            queued += f["queued"].as_u64().unwrap_or(0);
        }
        let _ = writeln!(
            out,
            "  fallbacks served so far (gateways in the pools): cache {cache}, degraded {degraded}, queued {queued}"
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Instance;

    fn state() -> MeshState {
        let instance = |name: &str, kind: &str, addr: &str| Instance {
            name: name.into(),
            kind: kind.into(),
            pid: Some(1),
            addr: addr.parse().unwrap(),
            admin: None,
            log: "x.log".into(),
        };
        MeshState {
            pid: 1,
            control: "127.0.0.1:9000".parse().unwrap(),
            router: "127.0.0.1:8080".parse().unwrap(),
            router_admin: "127.0.0.1:9080".parse().unwrap(),
            store: "redis://x".into(),
            logs: "logs".into(),
            instances: vec![
                instance("identity-gw-1", "identity-gw", "127.0.0.1:8081"),
                instance("identity-gw-2", "identity-gw", "127.0.0.1:8181"),
                instance("orders-1", "orders", "127.0.0.1:50054"),
                instance("orders-2", "orders", "127.0.0.1:50154"),
            ],
        }
    }

    #[test]
    fn an_ejected_gateway_and_an_open_breaker_are_seen() {
        let snapshot = Snapshot(serde_json::json!({
            "pools": [{"name": "identity", "healthy_instances": 1, "instances": [
                {"addr": "127.0.0.1:8081", "healthy": false, "ejected_for_ms": 800},
                {"addr": "127.0.0.1:8181", "healthy": true, "ejected_for_ms": 0}]}],
            "gateways": [{"instance": "business-gw-1", "fallbacks": {"cache": 3},
                "services": [{"name": "orders", "healthy_replicas": 2, "breaker": "open"}]}]
        }));
        let state = state();
        assert_eq!(snapshot.affected(state.instance("identity-gw-1").unwrap(), &state), Some(true));
        assert_eq!(snapshot.affected(state.instance("identity-gw-2").unwrap(), &state), Some(false));
        assert_eq!(snapshot.affected(state.instance("orders-2").unwrap(), &state), Some(true));
        assert!(snapshot.breaker_open("orders") && !snapshot.breaker_open("user"));
        let summary = snapshot.summary(&state);
        assert!(summary.contains("identity-gw-1 (127.0.0.1:8081) ejected for 800 ms"), "{summary}");
        assert!(summary.contains("business-gw-1 sees orders 2/2 healthy, breaker open"), "{summary}");
        assert!(summary.contains("cache 3"), "{summary}");
    }
}
