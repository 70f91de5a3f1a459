//! The configuration reference is generated from the code and current, and every example
//! configuration loads and passes `check`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_core::config::{Sources, Validate};
use mesh_tests::command::run_to_exit;
use mesh_tests::process::binary;

const ANSWER: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn the_configuration_reference_is_current() {
    let out = run_to_exit(&binary("meshctl"), &["config", "reference"], &[], ANSWER).unwrap();
    assert!(out.status.success(), "meshctl config reference failed: {}", out.stderr);
    let checked_in = std::fs::read_to_string(repo().join("docs/configuration.md")).unwrap_or_default();
    if out.stdout != checked_in {
        let line = out.stdout.lines().zip(checked_in.lines()).position(|(a, b)| a != b);
        panic!(
            "docs/configuration.md is stale (first difference at line {}). Regenerate it with:\n    \
             cargo run -p meshctl -- config reference > docs/configuration.md",
            line.map_or("end".to_string(), |l| (l + 1).to_string())
        );
    }
}

/// Loads `path` as component `name`'s configuration in this process, through the very loader
/// the binary uses (defaults, the file; unknown keys refused), and runs its validation.
fn load(name: &str, path: &Path) -> anyhow::Result<()> {
    fn with<C: serde::de::DeserializeOwned + serde::Serialize + Default + Validate>(
        path: &Path,
        list_keys: &[&str],
    ) -> anyhow::Result<()> {
        let cfg: C = Sources::default().with_list_keys(list_keys).with_file(path).load()?;
        cfg.validate()
    }
    match name {
        "gateway-router" => with::<gateway_router::Config>(path, gateway_router::config::LIST_KEYS),
        "identity-gateway" => with::<gateway::Config>(path, gateway::config::LIST_KEYS),
        "business-gateway" => with::<gateway::BusinessConfig>(path, gateway::config::LIST_KEYS),
        "auth-service" => with::<auth_service::Config>(path, auth_service::config::LIST_KEYS),
        "user-service" => with::<user_service::Config>(path, user_service::config::LIST_KEYS),
        "quota-service" => with::<quota_service::Config>(path, quota_service::config::LIST_KEYS),
        "orders-service" => with::<orders_service::Config>(path, orders_service::config::LIST_KEYS),
        "articles-service" => with::<articles_service::Config>(path, articles_service::config::LIST_KEYS),
        "analytics-service" => with::<analytics_service::Config>(path, analytics_service::config::LIST_KEYS),
        other => anyhow::bail!("no component named {other}"),
    }
}

#[test]
fn every_example_config_loads() {
    // config/examples/<component>.toml, and the files the Kubernetes base mounts.
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(repo().join("config/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    files.sort();
    let components: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        components,
        [
            "analytics-service",
            "articles-service",
            "auth-service",
            "business-gateway",
            "gateway-router",
            "identity-gateway",
            "orders-service",
            "quota-service",
            "user-service"
        ],
        "one example per component"
    );
    for k8s in ["auth", "quota"] {
        files.push((format!("{k8s}-service"), repo().join(format!("k8s/base/config/{k8s}.toml"))));
    }

    for (name, path) in &files {
        load(name, path).unwrap_or_else(|e| panic!("{} does not load as {name}: {e:#}", path.display()));
        let out =
            run_to_exit(&binary(name), &["--config", path.to_str().unwrap(), "check"], &[], ANSWER).unwrap();
        assert!(out.status.success(), "{name} --config {} check: {}", path.display(), out.stderr);
        assert_eq!(out.stdout.trim(), "ok");
    }
    // The router's example is the realistic one: rules with a header and a method, several pools.
    let router = std::fs::read_to_string(repo().join("config/examples/gateway-router.toml")).unwrap();
    let cfg: gateway_router::Config =
        Sources::default().with_file(repo().join("config/examples/gateway-router.toml")).load().unwrap();
    assert!(cfg.rules.iter().any(|r| r.header.is_some()) && cfg.rules.iter().any(|r| r.method.is_some()));
    assert!(cfg.pools.len() >= 3 && router.contains("[[rules]]"));

    // And the loader is strict, so a file that loads has no stray key.
    let dir = std::env::temp_dir().join(format!("mesh-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let misspelt = dir.join("router.toml");
    std::fs::write(&misspelt, router.replace("dns_refresh", "dns_refrsh")).unwrap();
    let err = load("gateway-router", &misspelt).unwrap_err();
    assert!(format!("{err:#}").contains("dns_refrsh"), "{err:#}");
    std::fs::remove_dir_all(dir).unwrap();
}
