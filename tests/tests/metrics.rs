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

/// The in-process meshes of this file's tests record into one process-wide recorder: one at a
/// time, or one test's traffic moves the other's counts.
static RECORDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_count_known_traffic_including_a_fallback_and_an_unretried_service_fault() {
    let _recorder = RECORDER.lock().await;
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
    let source = source();
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

/// The Rust source of every component, concatenated.
fn source() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut source = String::new();
    let mut stack = vec![root.join("services"), root.join("gateway-router/src"), root.join("meshctl/src")];
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
    source
}

/// Every `counter!`, `gauge!` and `histogram!` the code calls is in the catalogue that describes
/// it (so `/metrics` carries its HELP line), of the same kind; and the catalogue lists nothing
/// the code no longer records.
#[test]
fn every_recorded_metric_is_in_the_catalog() {
    use mesh_core::metrics_catalog;
    let source = source();
    let call = regex::Regex::new(r#"(counter|gauge|histogram)!\(\s*"([A-Za-z_:][A-Za-z0-9_:]*)""#).unwrap();
    let mut recorded = std::collections::BTreeSet::new();
    for found in call.captures_iter(&source) {
        let (kind, name) = (&found[1], &found[2]);
        let entry = metrics_catalog::find(name).unwrap_or_else(|| {
            panic!("{name} is recorded but not in mesh_core::metrics_catalog: it has no HELP")
        });
        assert_eq!(entry.kind.as_str(), kind, "{name} is recorded as a {kind}");
        recorded.insert(name.to_owned());
    }
    for entry in metrics_catalog::RECORDED {
        assert!(recorded.contains(entry.name), "the catalogue lists {}, which no code records", entry.name);
    }
    assert!(
        metrics_catalog::PROCESS
            .iter()
            .all(|m| m.name == "mesh_build_info" || m.name.starts_with("process_"))
    );
    assert!(recorded.len() >= 40, "only {} metrics found in the source", recorded.len());
}

/// The families of a Prometheus text exposition: name → (has TYPE, has HELP), and every
/// sample's family. A histogram's `_bucket`, `_sum` and `_count` samples belong to its family.
fn families(text: &str) -> (BTreeMap<String, (bool, bool)>, Vec<String>) {
    let mut families: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["#", "TYPE", name, ..] => families.entry((*name).to_owned()).or_default().0 = true,
            ["#", "HELP", name, help, ..] if !help.is_empty() => {
                families.entry((*name).to_owned()).or_default().1 = true
            }
            _ => {
                let name = line.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|base| families.contains_key(*base)))
                    .unwrap_or(name);
                samples.push(family.to_owned());
            }
        }
    }
    (families, samples)
}

/// Every family in `text` has TYPE and HELP, and is one the catalogue knows. Returns the family names.
fn check_described(what: &str, text: &str) -> std::collections::BTreeSet<String> {
    let (families, samples) = families(text);
    let mut seen = std::collections::BTreeSet::new();
    for family in samples {
        let (typed, helped) = families.get(&family).copied().unwrap_or_default();
        assert!(typed, "{what}: {family} has no # TYPE");
        assert!(helped, "{what}: {family} has no # HELP");
        assert!(
            mesh_core::metrics_catalog::find(&family).is_some(),
            "{what}: {family} is not in the catalogue"
        );
        seen.insert(family);
    }
    seen
}

/// Scrapes every component of a mesh of real processes (six services, both gateways and the
/// router, on a real Redis) after traffic through the router: every family has HELP and TYPE;
/// each process says `mesh_build_info{component=…} 1` and exports the standard process metrics.
/// Then the same of an in-process mesh after traffic of every kind the metrics test makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_has_help_text() {
    use mesh_tests::process::{ServiceProcess, binary, http_get};
    let redis = mesh_tests::RedisServer::start().await.unwrap();
    let prefix = mesh_tests::unique_prefix("help-text");
    let store = [("REDIS_URL", redis.url()), ("MESH_STORE__KEY_PREFIX", prefix.clone())];
    let start = |name: &str, extra: &[(&str, String)]| {
        let env: Vec<(&str, &str)> = store.iter().chain(extra).map(|(k, v)| (*k, v.as_str())).collect();
        ServiceProcess::start(binary(name), &env).unwrap_or_else(|e| panic!("{name} starts: {e}"))
    };
    let url = |p: &ServiceProcess| format!("http://{}", p.addr);
    let mut components: Vec<(&str, ServiceProcess)> = Vec::new();
    for name in ["auth-service", "user-service", "quota-service", "articles-service", "analytics-service"] {
        components.push((name, start(name, &[])));
    }
    let of = |components: &[(&str, ServiceProcess)], name: &str| {
        url(&components.iter().find(|(n, _)| *n == name).unwrap().1)
    };
    let orders =
        start("orders-service", &[("MESH_ARTICLES__ENDPOINTS", of(&components, "articles-service"))]);
    components.push(("orders-service", orders));
    let services: Vec<(&str, String)> = [
        ("MESH_SERVICES__AUTH__ENDPOINTS", "auth-service"),
        ("MESH_SERVICES__USER__ENDPOINTS", "user-service"),
        ("MESH_SERVICES__QUOTA__ENDPOINTS", "quota-service"),
        ("MESH_SERVICES__ORDERS__ENDPOINTS", "orders-service"),
        ("MESH_SERVICES__ARTICLES__ENDPOINTS", "articles-service"),
        ("MESH_SERVICES__ANALYTICS__ENDPOINTS", "analytics-service"),
    ]
    .into_iter()
    .map(|(key, name)| (key, of(&components, name)))
    .collect();
    let identity = start("identity-gateway", &services);
    let business = start("business-gateway", &services);
    let pools = [
        ("MESH_POOLS__IDENTITY__INSTANCES", identity.addr.to_string()),
        ("MESH_POOLS__BUSINESS__INSTANCES", business.addr.to_string()),
    ];
    components.push(("identity-gateway", identity));
    components.push(("business-gateway", business));
    components.push(("gateway-router", start("gateway-router", &pools)));
    let base = url(&components.last().unwrap().1);

    // Traffic through the router: register, log in, read the profile and the dashboard.
    let http = reqwest::Client::new();
    let body = serde_json::json!({"email": "help@example.com", "password": "correct horse battery", "display_name": "H"});
    let registered = mesh_tests::wait_until(std::time::Duration::from_secs(20), || async {
        let answer = http.post(format!("{base}/v1/auth/register")).json(&body).send().await;
        answer.is_ok_and(|a| a.status() == 201)
    })
    .await;
    assert!(registered, "registration through the router never succeeded");
    let login = serde_json::json!({"email": "help@example.com", "password": "correct horse battery"});
    let tokens: serde_json::Value =
        http.post(format!("{base}/v1/auth/login")).json(&login).send().await.unwrap().json().await.unwrap();
    let token = tokens["access_token"].as_str().expect("an access token").to_owned();
    for path in ["/v1/users/me", "/v1/dashboard"] {
        let answer = http.get(format!("{base}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }

    let mut all = std::collections::BTreeSet::new();
    for (name, process) in &components {
        let (code, text) = http_get(process.admin, "/metrics").await.unwrap();
        assert_eq!(code, 200, "{name}");
        let seen = check_described(name, &text);
        let samples = parse(&text).unwrap_or_else(|e| panic!("{name}: /metrics is not Prometheus text: {e}"));
        assert_eq!(
            total(&samples, "mesh_build_info", &[("component", name)]),
            1.0,
            "{name}: mesh_build_info"
        );
        for process_metric in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
            "process_threads",
        ] {
            assert!(seen.contains(process_metric), "{name}: no {process_metric}");
        }
        assert!(total(&samples, "process_resident_memory_bytes", &[]) > 0.0, "{name}");
        assert!(total(&samples, "process_open_fds", &[]) > 0.0, "{name}");
        println!("{name}: {} families, all described", seen.len());
        all.extend(seen);
    }
    for expected in ["router_requests_total", "http_server_requests_total", "grpc_server_requests_total"] {
        assert!(all.contains(expected), "the traffic left no {expected}");
    }

    // The in-process mesh: fallbacks and faults record families the healthy path does not.
    let _recorder = RECORDER.lock().await;
    let _ = mesh_core::telemetry::metrics_handle();
    let mut t = TestMesh::start().await;
    let (_, token, _) = t.user("help-in-process@example.com").await;
    let me = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(me.status, StatusCode::OK);
    t.mesh.get_mut(Kind::User, 1).stop().await.unwrap();
    t.mesh.get_mut(Kind::User, 2).stop().await.unwrap();
    let cached = t.call(Method::GET, "/v1/users/me", Some(&token), None).await;
    assert_eq!(cached.header("x-mesh-fallback"), "cache");
    let text = t.http.get(format!("{}/metrics", t.admin_base)).send().await.unwrap().text().await.unwrap();
    let seen = check_described("in-process mesh", &text);
    println!("in-process mesh: {} families, all described", seen.len());
    assert!(seen.contains("gateway_fallbacks_total"));
    t.mesh.stop().await.unwrap();
}
