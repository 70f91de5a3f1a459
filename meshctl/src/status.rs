//! `meshctl status`: the router's view of the mesh as a table in the terminal, or with `--json`
//! the router's whole status document (`/mesh/status?format=json&view=full`), for scripts.

use std::fmt::Write as _;

use anyhow::Context;
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub(crate) struct StatusArgs {
    /// The router's admin listener to ask (`/mesh/status` is not served on the public port).
    #[arg(long, env = "MESH_ROUTER_ADMIN", default_value = "http://127.0.0.1:9080")]
    router: String,
    /// Print the router's full status JSON instead of the table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let url = format!("{}/mesh/status?format=json&view=full", args.router.trim_end_matches('/'));
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build()?;
    let view: Value = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the router at {} (is the mesh up?)", args.router))?
        .error_for_status()?
        .json()
        .await
        .context("the router's answer is not the status JSON")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render(&view));
    }
    Ok(())
}

/// The table, as text.
pub(crate) fn render(view: &Value) -> String {
    let mut out = String::new();
    for pool in view["pools"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "pool {}  {}/{} healthy  in flight {}  retries {} (refused {})",
            pool["name"].as_str().unwrap_or("?"),
            pool["healthy_instances"].as_u64().unwrap_or(0),
            pool["instances"].as_array().map_or(0, Vec::len),
            pool["in_flight"].as_u64().unwrap_or(0),
            pool["retry_budget"]["retries"].as_u64().unwrap_or(0),
            pool["retry_budget"]["refused"].as_u64().unwrap_or(0),
        );
        let _ = writeln!(
            out,
            "  {:<22} {:<10} {:>9} {:>9} {:>7} {:>10}",
            "INSTANCE", "HEALTH", "IN FLIGHT", "REQUESTS", "ERRORS", "LATENCY"
        );
        for i in pool["instances"].as_array().into_iter().flatten() {
            let health = if i["healthy"] == true {
                "up".to_owned()
            } else if i["ejected_for_ms"].as_u64().unwrap_or(0) > 0 {
                "ejected".to_owned()
            } else {
                "down".to_owned()
            };
            let _ = writeln!(
                out,
                "  {:<22} {:<10} {:>9} {:>9} {:>6.1}% {:>8.1}ms",
                i["addr"].as_str().unwrap_or("?"),
                health,
                i["in_flight"].as_u64().unwrap_or(0),
                i["requests"].as_u64().unwrap_or(0),
                i["error_rate"].as_f64().unwrap_or(0.0) * 100.0,
                i["ewma_latency_ms"].as_f64().unwrap_or(0.0),
            );
        }
    }
    for gateway in view["gateways"].as_array().into_iter().flatten() {
        let f = &gateway["fallbacks"];
        let _ = writeln!(
            out,
            "gateway {} ({})  fallbacks: cache {} degraded {} queued {}",
            gateway["instance"].as_str().unwrap_or("?"),
            gateway["pool"].as_str().unwrap_or("?"),
            f["cache"].as_u64().unwrap_or(0),
            f["degraded"].as_u64().unwrap_or(0),
            f["queued"].as_u64().unwrap_or(0),
        );
        if let Some(error) = gateway["error"].as_str() {
            let _ = writeln!(out, "  {error}");
            continue;
        }
        let _ = writeln!(out, "  {:<12} {:>16} {:<10}", "SERVICE", "HEALTHY REPLICAS", "BREAKER");
        for s in gateway["services"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<12} {:>16} {:<10}",
                s["name"].as_str().unwrap_or("?"),
                s["healthy_replicas"].as_u64().unwrap_or(0),
                s["breaker"].as_str().unwrap_or("?")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_instance_and_service() {
        let view = serde_json::json!({
            "pools": [{"name": "identity", "healthy_instances": 1, "in_flight": 0,
                "retry_budget": {"retries": 2, "refused": 0},
                "instances": [
                    {"addr": "127.0.0.1:8081", "healthy": true, "ejected_for_ms": 0, "in_flight": 0, "requests": 10, "error_rate": 0.0, "ewma_latency_ms": 3.2},
                    {"addr": "127.0.0.1:8181", "healthy": false, "ejected_for_ms": 900, "in_flight": 0, "requests": 4, "error_rate": 0.5, "ewma_latency_ms": 1.0}
                ]}],
            "gateways": [{"instance": "identity-gw-1", "pool": "identity",
                "services": [{"name": "user", "healthy_replicas": 2, "breaker": "closed"}]}]
        });
        let table = render(&view);
        assert!(table.contains("pool identity  1/2 healthy"), "{table}");
        assert!(table.contains("127.0.0.1:8181") && table.contains("ejected"), "{table}");
        assert!(table.contains("user") && table.contains("closed"), "{table}");
    }
}
