//! Every environment variable the deployment files set is one the binaries read, and every key of
//! the TOML files they mount is a configuration key. The configs refuse unknown keys
//! (`deny_unknown_fields`), so a misspelt `MESH_*` name would stop a binary at start-up, in
//! production, rather than here.
//!
//! The Kubernetes manifests are rendered with `kubectl kustomize` (every overlay under
//! `k8s/overlays`); `docker/compose.yaml` is read as it is. Both are parsed by the small block-YAML
//! reader of support/manifests.rs, which refuses anything it does not understand. Each container
//! is matched to its binary by its command, and each variable is looked up in that binary's
//! default config serialised to JSON, so the known keys come from the code itself. Then the container's whole environment (and mounted
//! config file) is loaded the way the binary loads it, so values must parse too.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use mesh_core::config::Sources;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use support::manifests::{kustomize, parse_yaml};

/// Variables read outside the `MESH_<path>` scheme: mesh-core's config and telemetry, and the
/// OpenTelemetry SDK's standard ones.
/// (docs/observability.md lists what each means.)
const OTHER_VARS: &[&str] = &[
    "MESH_CONFIG",
    "MESH_LOG",
    "RUST_LOG",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
];

/// What one binary reads: its default config, the keys it parses as comma-separated lists, and
/// how it loads (and validates) its configuration.
struct Binary {
    config: Value,
    list_keys: Vec<String>,
    load: fn(&Sources) -> Result<(), String>,
}

fn binaries() -> BTreeMap<&'static str, Binary> {
    fn bin<C: Serialize + Default>(list_keys: &[&str], load: fn(&Sources) -> Result<(), String>) -> Binary {
        Binary {
            config: serde_json::to_value(C::default()).expect("configs serialise"),
            list_keys: list_keys.iter().map(|k| (*k).to_owned()).collect(),
            load,
        }
    }
    fn load<C: DeserializeOwned + Serialize + Default>(sources: &Sources) -> Result<C, String> {
        sources.load::<C>().map_err(|e| e.to_string())
    }
    fn valid(result: anyhow::Result<()>) -> Result<(), String> {
        result.map_err(|e| format!("{e:#}"))
    }
    let gateway_lists = gateway::config::LIST_KEYS;
    BTreeMap::from([
        (
            "gateway-router",
            bin::<gateway_router::Config>(gateway_router::config::LIST_KEYS, |s| {
                valid(load::<gateway_router::Config>(s)?.validate())
            }),
        ),
        ("identity-gateway", bin::<gateway::Config>(gateway_lists, |s| load::<gateway::Config>(s).map(drop))),
        (
            "business-gateway",
            bin::<gateway::BusinessConfig>(gateway_lists, |s| load::<gateway::BusinessConfig>(s).map(drop)),
        ),
        // The list keys of the services are the ones their main.rs declares.
        (
            "auth-service",
            bin::<auth_service::Config>(&["admin_emails"], |s| {
                valid(load::<auth_service::Config>(s)?.validate())
            }),
        ),
        ("user-service", bin::<user_service::Config>(&[], |s| load::<user_service::Config>(s).map(drop))),
        (
            "quota-service",
            bin::<quota_service::Config>(&[], |s| valid(load::<quota_service::Config>(s)?.validate())),
        ),
        (
            "orders-service",
            bin::<orders_service::Config>(&["articles.endpoints"], |s| {
                valid(load::<orders_service::Config>(s)?.validate())
            }),
        ),
        (
            "articles-service",
            bin::<articles_service::Config>(&[], |s| valid(load::<articles_service::Config>(s)?.validate())),
        ),
        (
            "analytics-service",
            bin::<analytics_service::Config>(&[], |s| load::<analytics_service::Config>(s).map(drop)),
        ),
    ])
}

/// What is wrong with one container's environment: names the binary does not read, a config
/// file that is not mounted or has unknown keys, values the binary would refuse.
fn check_env(b: &Binary, env: &[(&str, &Value)], files: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems: Vec<String> = env.iter().filter_map(|(var, _)| check_var(b, var).err()).collect();
    let mut file = None;
    if let Some((_, path)) = env.iter().find(|(var, _)| *var == "MESH_CONFIG") {
        let name = path.as_str().and_then(|p| Path::new(p).file_name()).unwrap_or_default();
        match files.get(&*name.to_string_lossy()) {
            Some(toml) => {
                problems.extend(check_toml(b, toml));
                file = Some(toml.as_str());
            }
            None => problems.push(format!("MESH_CONFIG={path} is in no ConfigMap")),
        }
    }
    problems.extend(check_load(b, env, file).err());
    problems
}

/// Loads `env` (and the file `MESH_CONFIG` names, given as its content) as `b` loads its config.
/// Values that come from the cluster (`valueFrom`) are stood in for.
fn check_load(b: &Binary, env: &[(&str, &Value)], file: Option<&str>) -> Result<(), String> {
    let vars: HashMap<String, String> = env
        .iter()
        .map(|(name, value)| {
            let value = match (value.as_str(), *name) {
                (Some(v), _) => v.to_owned(),
                (None, "REDIS_URL") => "redis://redis.invalid:6379".to_owned(),
                (None, _) => "from-the-cluster".to_owned(),
            };
            ((*name).to_owned(), value)
        })
        .collect();
    let mut sources = b.list_keys.iter().fold(Sources::from_env(vars), |s, k| s.with_list_key(k.clone()));
    let path = std::env::temp_dir().join(format!(
        "deploy-env-{}-{}.toml",
        std::process::id(),
        mesh_core::ids::new_id()
    ));
    if let Some(content) = file {
        std::fs::write(&path, content).map_err(|e| e.to_string())?;
        sources = sources.with_file(&path);
    }
    let result = (b.load)(&sources);
    if file.is_some() {
        let _ = std::fs::remove_file(&path);
    }
    result.map_err(|e| format!("the binary would refuse this configuration: {e}"))
}

#[test]
fn every_variable_and_mounted_key_in_the_kubernetes_manifests_is_read_by_its_binary() {
    let root = workspace_root();
    let bins = binaries();
    let mut overlays: Vec<PathBuf> = std::fs::read_dir(root.join("k8s/overlays"))
        .expect("k8s/overlays exists")
        .map(|e| e.expect("readable").path())
        .collect();
    overlays.sort();
    assert!(!overlays.is_empty(), "no overlay under k8s/overlays");
    let mut problems = Vec::new();
    for overlay in &overlays {
        let name = overlay.file_name().unwrap().to_string_lossy().into_owned();
        let Some(docs) = kustomize(overlay) else {
            // Straight to stderr: the test harness would swallow println! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: kubectl is not installed, so the Kubernetes manifests were not checked"
            );
            return;
        };

        let mut files = BTreeMap::new();
        for doc in docs.iter().filter(|d| d["kind"] == "ConfigMap") {
            for (file, content) in doc["data"].as_object().into_iter().flatten() {
                files.insert(file.clone(), content.as_str().unwrap_or_default().to_owned());
            }
        }
        let mut seen = BTreeSet::new();
        for doc in &docs {
            let pod = &doc["spec"]["template"]["spec"];
            let containers = [&pod["containers"], &pod["initContainers"]];
            for c in containers.into_iter().filter_map(Value::as_array).flatten() {
                let at = format!(
                    "{name}: {}/{} container {}",
                    doc["kind"].as_str().unwrap_or("?"),
                    doc["metadata"]["name"].as_str().unwrap_or("?"),
                    c["name"].as_str().unwrap_or("?"),
                );
                if c.get("envFrom").is_some() {
                    problems
                        .push(format!("{at}: envFrom hides the names from this check; list them under env"));
                }
                let env: Vec<(&str, &Value)> = c["env"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| (e["name"].as_str().unwrap_or_default(), &e["value"]))
                    .collect();
                let Some((binary, b)) = binary_of(&bins, c) else {
                    if !env.is_empty() {
                        problems.push(format!("{at}: runs no mesh binary, yet sets {env:?}"));
                    }
                    continue;
                };
                seen.insert(binary);
                problems.extend(check_env(b, &env, &files).into_iter().map(|e| format!("{at}: {e}")));
            }
        }
        for missing in bins.keys().filter(|b| !seen.contains(*b)) {
            problems.push(format!("{name}: no container runs {missing}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_variable_in_the_compose_file_is_read_by_its_binary() {
    let bins = binaries();
    let compose = parse_yaml(&std::fs::read_to_string(workspace_root().join("docker/compose.yaml")).unwrap());
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (service, spec) in compose["services"].as_object().expect("services") {
        let env = spec["environment"].as_object().cloned().unwrap_or_default();
        let Some((binary, b)) = binary_of(&bins, spec) else {
            // A third-party image (Grafana) reads its own variables; the mesh's image must run
            // one of the mesh's binaries.
            let third_party = spec["image"].as_str().is_some_and(|image| !image.starts_with("mesh:"));
            assert!(third_party || env.is_empty(), "{service} runs no mesh binary, yet sets {env:?}");
            continue;
        };
        seen.insert(binary);
        let env: Vec<(&str, &Value)> = env.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let no_files = BTreeMap::new();
        problems.extend(check_env(b, &env, &no_files).into_iter().map(|e| format!("compose {service}: {e}")));
    }
    for missing in bins.keys().filter(|b| !seen.contains(*b)) {
        problems.push(format!("compose: no service runs {missing}"));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the workspace").to_path_buf()
}

/// The binary a container (or compose service) runs: its command's file name.
fn binary_of<'a>(bins: &'a BTreeMap<&'static str, Binary>, c: &Value) -> Option<(&'static str, &'a Binary)> {
    let command = c["command"][0].as_str()?;
    let name = Path::new(command).file_name()?.to_str()?;
    bins.get_key_value(name).map(|(k, v)| (*k, v))
}

/// `MESH_A__B_C` is the key `a.b_c`; a few other names are read as they are.
fn check_var(b: &Binary, var: &str) -> Result<(), String> {
    if var == "REDIS_URL" {
        // An alias of MESH_STORE__REDIS_URL, applied only where the config has a store.
        return lookup(&b.config, &["store".into()])
            .map(drop)
            .ok_or_else(|| format!("{var}: this binary has no store"));
    }
    if OTHER_VARS.contains(&var) {
        return Ok(());
    }
    let Some(rest) = var.strip_prefix("MESH_") else {
        return Err(format!("{var} is not a variable the mesh reads"));
    };
    let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    let dotted = path.join(".");
    match lookup(&b.config, &path) {
        None => Err(format!("{var}: no config key {dotted}")),
        Some(Value::Object(_)) => Err(format!("{var}: {dotted} is a table, not a value")),
        Some(Value::Array(_)) if !b.list_keys.contains(&dotted) => {
            Err(format!("{var}: {dotted} is a list this binary does not parse from the environment"))
        }
        Some(_) => Ok(()),
    }
}

/// Checks the tables and keys of a TOML file (the plain subset our files use) against `b`.
/// Entries of a list of tables (`[[signing_keys]]`) cannot be: the default list is empty.
fn check_toml(b: &Binary, toml: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let (mut table, mut in_list) = (Vec::<String>::new(), false);
    for line in toml.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            (table, in_list) = (name.split('.').map(|s| s.trim().to_owned()).collect(), true);
            if !matches!(lookup(&b.config, &table), Some(Value::Array(_))) {
                problems.push(format!("[[{name}]] is not a list in the config"));
            }
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            (table, in_list) = (name.split('.').map(|s| s.trim().to_owned()).collect(), false);
            if !matches!(lookup(&b.config, &table), Some(Value::Object(_))) {
                problems.push(format!("[{name}] is not a table in the config"));
            }
        } else if let Some((key, _)) = line.split_once('=') {
            let path: Vec<String> = table.iter().cloned().chain([key.trim().to_owned()]).collect();
            match lookup(&b.config, &path) {
                _ if in_list => {}
                None => problems.push(format!("no config key {}", path.join("."))),
                Some(Value::Object(_)) => {
                    problems.push(format!("{} is a table, not a value", path.join(".")))
                }
                Some(_) => {}
            }
        } else {
            problems.push(format!("cannot read TOML line {line:?}"));
        }
    }
    problems
}

fn lookup<'v>(config: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(config, |at, key| at.as_object()?.get(key))
}
