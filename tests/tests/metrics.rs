//! `/metrics` parses as Prometheus text, and its counters move by the amounts known traffic
//! implies — including a fallback, and a service fault the router does not retry.

mod support;

use std::collections::BTreeMap;

use meshctl::Kind;
use reqwest::{Method, StatusCode};
use support::TestMesh;

/// One sample: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

/// Parses the Prometheus text format strictly enough to fail on anything malformed.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if !matches!(words.first(), Some(&"TYPE") | Some(&"HELP")) {
                return Err(format!("bad comment line: {line}"));
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("no value: {line}"))?;
        let value: f64 = value.parse().map_err(|_| format!("bad value: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(|| format!("unclosed labels: {line}"))?;
                let mut labels = BTreeMap::new();
                for pair in split_labels(body) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| format!("bad label: {line}"))?;
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .ok_or_else(|| format!("unquoted label value: {line}"))?;
                    labels.insert(k.to_owned(), v.to_owned());
                }
                (name, labels)
            }
            None => (series, BTreeMap::new()),
        };
        let good_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !good_name {
            return Err(format!("bad metric name: {line}"));
        }
        samples.push((name.to_owned(), labels, value));
    }
    Ok(samples)
}

/// Splits `a="x",b="y,z"` on the commas between labels only.
fn split_labels(body: &str) -> Vec<String> {
    let (mut parts, mut current, mut quoted) = (Vec::new(), String::new(), false);
    for c in body.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
}

/// The sum of `name`'s samples whose labels include every pair of `with`.
fn total(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name && with.iter().all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_known_traffic_including_a_fallback_and_an_unretried_service_fault() {
    let _ = mesh_core::telemetry::metrics_handle();
    let mut t = TestMesh::start().await;
    let (_, token, _) = t.user("metrics@example.com").await;
    let (_, never_read, _) = t.user("never-read@example.com").await;
    let scrape = || async {
        let text =
            t.http.get(format!("{}/metrics", t.admin_base)).send().await.unwrap().text().await.unwrap();
        parse(&text).unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
    };

    let before = scrape().await;
    const N: usize = 7;
    for _ in 0..N {
        let me = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
        assert_eq!(me.status, StatusCode::OK);
    }
    let after = scrape().await;
    let moved = |name: &str, with: &[(&str, &str)]| total(&after, name, with) - total(&before, name, with);
    assert_eq!(moved("router_requests_total", &[("pool", "identity"), ("status", "200")]), N as f64);
    assert_eq!(
        moved("http_server_requests_total", &[("route", "/v1/users/me"), ("status", "200")]),
        N as f64
    );
    assert_eq!(
        moved(
            "grpc_server_requests_total",
            &[("method", "/mesh.user.v1.UserService/GetProfile"), ("code", "Ok")]
        ),
        N as f64
    );
    // Every request is metered, by slices a gateway leases from quota: per gateway one lease
    // while nothing is known of the window, then one slice covering the rest (docs/ARCHITECTURE.md §5).
    let leases = moved(
        "grpc_server_requests_total",
        &[("method", "/mesh.quota.v1.QuotaService/Lease"), ("code", "Ok")],
    );
    assert!((1.0..N as f64).contains(&leases), "{leases} quota leases for {N} requests");
    assert_eq!(
        moved("grpc_server_requests_total", &[("method", "/mesh.quota.v1.QuotaService/Consume")]),
        0.0
    );
    assert!(
        after.iter().any(|(n, _, _)| n == "router_request_duration_seconds_bucket"),
        "latency histograms are exported"
    );

    // The user service goes away: the profile read before is answered from the cache (a
    // fallback), and one that was never read gets 503 from both gateways (the router retries).
    t.mesh.get_mut(Kind::User, 1).stop().await.unwrap();
    t.mesh.get_mut(Kind::User, 2).stop().await.unwrap();
    let before = scrape().await;
    let cached = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(cached.status, StatusCode::OK, "{:?}", cached.body);
    assert_eq!(cached.header("x-mesh-fallback"), "cache");
    let refused = t.call(Method::GET, "/v1/users/me", Some(&never_read), None).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let after = scrape().await;
    let moved = |name: &str, with: &[(&str, &str)]| total(&after, name, with) - total(&before, name, with);
    let fallbacks = moved("gateway_fallbacks_total", &[("kind", "cache")]);
    let retries = moved("router_retries_total", &[("pool", "identity"), ("granted", "true")]);
    println!("after the user service stopped: {fallbacks} cache fallback(s), {retries} router retr(y/ies)");
    assert_eq!(fallbacks, 1.0);
    assert_eq!(
        retries, 0.0,
        "a service's 503 is not retried on the other gateway, which calls the same service"
    );
    let excerpt: Vec<String> = scrape()
        .await
        .into_iter()
        .filter(|(n, _, _)| {
            ["router_retries_total", "gateway_fallbacks_total", "router_requests_total"].contains(&n.as_str())
        })
        .map(|(n, l, v)| format!("{n}{l:?} {v}"))
        .collect();
    println!("/metrics excerpt:\n{}", excerpt.join("\n"));
    t.mesh.stop().await.unwrap();
}

#[test]
fn the_parser_refuses_malformed_lines() {
    assert_eq!(parse("# TYPE x counter\nx{a=\"1,2\",b=\"y\"} 3\n").unwrap().len(), 1);
    for bad in ["x{a=1} 2", "x 2 3 4x", "9x 1", "x{a=\"1\" 2", "# nonsense"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
}

/// Every metric the Grafana dashboard queries is one the code records (by its name in a
/// `metrics::…!` call), so the dashboard cannot silently chart nothing.
#[test]
fn the_grafana_dashboard_queries_only_metrics_the_code_records() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("k8s/grafana/mesh-dashboard.json")).unwrap())
            .unwrap();
    let mut source = String::new();
    let mut stack = vec![root.join("services"), root.join("gateway-router/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.ends_with("_total") || w.ends_with("_bucket") || w.ends_with("_open"));
            for name in names {
                let base = name.strip_suffix("_bucket").unwrap_or(name);
                assert!(
                    source.contains(&format!("\"{base}\"")),
                    "the dashboard queries {name}, which no code records"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} metrics checked");
}
