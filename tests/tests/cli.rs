//! The command line every binary answers (`mesh_core::cli`): `--help` and `--version` print and
//! exit without binding anything, `check` refuses a misspelt key by its name, `print-config`
//! redacts secrets. Real binaries as child processes; build them first (`cargo build --bins`).

use std::net::TcpListener;
use std::time::Duration;

use mesh_tests::command::run_to_exit;
use mesh_tests::process::binary;

/// The nine servers; meshctl is tested beside them.
const SERVERS: &[&str] = &[
    "gateway-router",
    "identity-gateway",
    "business-gateway",
    "auth-service",
    "user-service",
    "quota-service",
    "orders-service",
    "articles-service",
    "analytics-service",
];

/// A debug binary answers `--help` in well under a second; a process that serves never exits.
const ANSWER: Duration = Duration::from_secs(20);

/// A loopback port that is free now (bound then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mesh-cli-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_binary_answers_help_without_serving() {
    for name in SERVERS {
        let (listen, admin) = (free_port(), free_port());
        let env = [
            ("MESH_LISTEN", format!("127.0.0.1:{listen}")),
            ("MESH_ADMIN_LISTEN", format!("127.0.0.1:{admin}")),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let help = run_to_exit(&binary(name), &["--help"], &env, ANSWER).unwrap();
        assert!(help.status.success(), "{name} --help: {help:?}");
        for word in ["Usage:", "check", "print-config", "print-defaults", "--config", "--version"] {
            assert!(help.stdout.contains(word), "{name} --help does not name {word}:\n{}", help.stdout);
        }
        // Nothing was bound: both ports are still free.
        for port in [listen, admin] {
            TcpListener::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("{name} --help left port {port} taken: {e}"));
        }
        let version = run_to_exit(&binary(name), &["--version"], &env, ANSWER).unwrap();
        assert!(version.status.success(), "{name} --version: {version:?}");
        assert_eq!(version.stdout.trim(), format!("{name} {}", env!("CARGO_PKG_VERSION")), "{name}");
        println!("{name}: --help answered in {:?}", help.took);
    }

    let meshctl = binary("meshctl");
    let help = run_to_exit(&meshctl, &["--help"], &[], ANSWER).unwrap();
    assert!(help.status.success(), "{help:?}");
    for word in ["up", "status", "bench", "config", "--version"] {
        assert!(help.stdout.contains(word), "meshctl --help does not name {word}:\n{}", help.stdout);
    }
    let help = run_to_exit(&meshctl, &["config", "--help"], &[], ANSWER).unwrap();
    for word in ["check", "print-config", "print-defaults", "reference"] {
        assert!(help.stdout.contains(word), "meshctl config --help does not name {word}:\n{}", help.stdout);
    }
    // `up --help` describes `up`; it does not start the mesh.
    let up = run_to_exit(&meshctl, &["up", "--help"], &[], ANSWER).unwrap();
    assert!(up.status.success() && up.stdout.contains("Usage:"), "{up:?}");
    let version = run_to_exit(&meshctl, &["--version"], &[], ANSWER).unwrap();
    assert_eq!(version.stdout.trim(), format!("meshctl {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn check_refuses_an_unknown_key_naming_it() {
    let dir = scratch("check");
    let router = binary("gateway-router");

    // A misspelt top-level key and a misspelt nested key in a file.
    for (file, key) in
        [("listne = \"127.0.0.1:1\"\n", "listne"), ("[health]\nintervall = \"1s\"\n", "intervall")]
    {
        let path = write(&dir, "bad.toml", file);
        let out = run_to_exit(&router, &["--config", path.to_str().unwrap(), "check"], &[], ANSWER).unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stderr.contains(key), "the message does not name `{key}`: {}", out.stderr);
        assert!(!out.stdout.contains("ok"), "{out:?}");
    }

    // A misspelt MESH_ variable, top level and nested, for a service and a gateway.
    for (name, var, key) in [
        ("auth-service", "MESH_ISSUR", "issur"),
        ("auth-service", "MESH_PASSWORD_HASH__MEMRY_KIB", "memry_kib"),
        ("identity-gateway", "MESH_JWT__LEWAY", "leway"),
    ] {
        let out = run_to_exit(&binary(name), &["check"], &[(var, "1")], ANSWER).unwrap();
        assert_eq!(out.status.code(), Some(1), "{name} {var}: {out:?}");
        assert!(out.stderr.contains(key), "{name}: the message does not name `{key}`: {}", out.stderr);
    }

    // The component's own validation runs too: a rule naming a pool that does not exist.
    let path = write(&dir, "rule.toml", "[[rules]]\nprefix = \"/v1/x\"\npool = \"nowhere\"\n");
    let out = run_to_exit(&router, &["--config", path.to_str().unwrap(), "check"], &[], ANSWER).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("nowhere"), "{}", out.stderr);

    // A valid file passes; --config wins over MESH_CONFIG.
    let good = write(&dir, "good.toml", "listen = \"127.0.0.1:18080\"\n[health]\ninterval = \"2s\"\n");
    let bad = write(&dir, "bad.toml", "listne = 1\n");
    let out = run_to_exit(
        &router,
        &["--config", good.to_str().unwrap(), "check"],
        &[("MESH_CONFIG", bad.to_str().unwrap())],
        ANSWER,
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.trim(), "ok");
    // And MESH_CONFIG alone is read, as before the CLI.
    let out = run_to_exit(&router, &["check"], &[("MESH_CONFIG", bad.to_str().unwrap())], ANSWER).unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // meshctl checks any component's file with the same code.
    let out = run_to_exit(
        &binary("meshctl"),
        &["config", "check", "--component", "gateway-router", "--config", bad.to_str().unwrap()],
        &[],
        ANSWER,
    )
    .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("listne"), "{}", out.stderr);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn print_config_shows_the_effective_config_with_secrets_redacted() {
    let dir = scratch("print");
    let file = write(
        &dir,
        "auth.toml",
        "issuer = \"https://auth.example\"\n[[signing_keys]]\nkid = \"k1\"\nprivate_key_pem = \"-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIHunter2\\n-----END PRIVATE KEY-----\"\n",
    );
    let out = run_to_exit(
        &binary("auth-service"),
        &["--config", file.to_str().unwrap(), "print-config"],
        &[("MESH_STORE__REDIS_URL", "redis://mesh:hunter2@redis:6379/0"), ("MESH_ACCESS_TTL", "5m")],
        ANSWER,
    )
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !out.stdout.contains("hunter2") && !out.stdout.contains("Hunter2"),
        "a secret leaked:\n{}",
        out.stdout
    );
    assert!(!out.stdout.contains("BEGIN PRIVATE KEY"), "{}", out.stdout);
    // The rest is the effective configuration: file, then environment, over the defaults.
    for line in [
        "issuer = \"https://auth.example\"",
        "access_ttl = \"5m\"",
        "redis_url = \"redis://mesh:<redacted>@redis:6379/0\"",
        "private_key_pem = \"<redacted>\"",
        "kid = \"k1\"",
        "refresh_ttl = \"30days\"",
    ] {
        assert!(out.stdout.contains(line), "missing {line}:\n{}", out.stdout);
    }
    // What print-config prints loads again (secrets aside): print-defaults round-trips exactly.
    let defaults = run_to_exit(&binary("gateway-router"), &["print-defaults"], &[], ANSWER).unwrap();
    let path = write(&dir, "defaults.toml", &defaults.stdout);
    let out = run_to_exit(
        &binary("gateway-router"),
        &["--config", path.to_str().unwrap(), "print-config"],
        &[],
        ANSWER,
    )
    .unwrap();
    assert_eq!(out.stdout, defaults.stdout);
    std::fs::remove_dir_all(dir).unwrap();
}
