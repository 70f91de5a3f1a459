//! The container tests' harness: podman with the project's `docker/podman/containers.conf`, the
//! image `scripts/image.sh --from-host` makes of the binaries cargo built, and compose projects
//! of `docker/compose.yaml` run by podman-compose, each on its own network and host ports.
//!
//! Where podman cannot run, the suite says so by setting `SKIP_CONTAINER_TESTS` to the reason
//! (`scripts/test.sh` does when it cannot install podman); the tests then print that reason and
//! pass. Without that variable a missing podman fails them: they are never skipped silently.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::chaos::Api;

/// The image the tests run: built from this checkout's dev binaries, under its own name so a
/// user's `mesh:dev` is left alone.
pub(crate) const IMAGE: &str = "localhost/mesh-test:dev";
/// Redis made from Debian's package by `scripts/image.sh --redis` (no registry is needed).
pub(crate) const REDIS_IMAGE: &str = "localhost/mesh-redis:bookworm";

/// The longest any one podman command may take (a `run` of a container to its health check,
/// a `stop` with its grace period): past it the command is killed and the test fails, saying
/// what it printed, instead of hanging the suite.
const PODMAN_COMMAND: Duration = Duration::from_secs(120);
/// `scripts/image.sh`: the runtime and Redis bases from Debian's mirror the first time (about
/// 30 s each), then the image itself.
const IMAGE_BUILD: Duration = Duration::from_secs(600);
/// `podman-compose up -d` or `down`: 18 containers created and started one by one.
const COMPOSE_COMMAND: Duration = Duration::from_secs(300);

/// How long a compose mesh may take to be whole: 17 containers of debug binaries on a busy
/// 2-core machine (about 10 s when idle).
const MESH_READY: Duration = Duration::from_secs(120);

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Podman, ready to use: None, having said why, when the suite was told containers cannot run.
pub(crate) fn podman() -> Option<Podman> {
    if let Ok(reason) = std::env::var("SKIP_CONTAINER_TESTS") {
        eprintln!("SKIP: container test not run: {reason}");
        return None;
    }
    let found = Command::new("podman").arg("--version").output();
    assert!(
        found.as_ref().is_ok_and(|o| o.status.success()),
        "podman is missing: scripts/test.sh installs it (as root); or set SKIP_CONTAINER_TESTS to the reason it cannot run"
    );
    Some(Podman)
}

/// One container test at a time: each starts up to 17 containers on a 2-core machine. (An async
/// mutex: each test holds it across its awaits, on a runtime of its own.)
pub(crate) async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

pub(crate) struct Podman;

impl Podman {
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("CONTAINERS_CONF", repo_root().join("docker/podman/containers.conf"));
        command
    }

    /// `podman ARGS`, which must succeed: its stdout.
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let output = self.try_run(args);
        assert!(
            output.status.success(),
            "podman {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    /// `podman ARGS`, whatever it answers (within [`PODMAN_COMMAND`]).
    pub(crate) fn try_run(&self, args: &[&str]) -> Output {
        let mut command = self.command("podman");
        command.args(args);
        bounded(command, PODMAN_COMMAND).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The test image (and the Redis image), built once per test binary by the script users run.
    pub(crate) fn image(&self) -> &'static str {
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| {
            let started = Instant::now();
            let mut command = self.command("bash");
            command
                .arg(repo_root().join("scripts/image.sh"))
                .args(["--from-host", "--profile", "dev", "--redis", "--tag", IMAGE])
                .current_dir(repo_root());
            let output = bounded(command, IMAGE_BUILD).unwrap_or_else(|e| panic!("{e:#}"));
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "scripts/image.sh failed:\n{said}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            println!("{said}image built in {:?}", started.elapsed());
        });
        IMAGE
    }

    /// The address of a running container on its (only) network.
    pub(crate) fn ip(&self, container: &str) -> String {
        self.run(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            container,
        ])
    }

    /// The host pid of a container's first process.
    pub(crate) fn pid(&self, container: &str) -> u32 {
        self.run(&["inspect", "--format", "{{.State.Pid}}", container]).parse().unwrap()
    }
}

/// `command` run to its exit within `deadline` (its whole process group killed past it), as
/// the `Output` of `Command::output`.
fn bounded(command: Command, deadline: Duration) -> anyhow::Result<Output> {
    let finished = mesh_tests::command::run_bounded(command, deadline)?;
    Ok(Output {
        status: finished.status,
        stdout: finished.stdout.into_bytes(),
        stderr: finished.stderr.into_bytes(),
    })
}

/// A port no one on this host listens on now, on every interface (compose publishes there).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("0.0.0.0:0").unwrap().local_addr().unwrap().port()
}

/// `docker/compose.yaml` brought up by podman-compose under its own project name; brought down,
/// volumes and all, when dropped.
pub(crate) struct ComposeMesh {
    podman: Podman,
    pub(crate) project: String,
    pub(crate) router: SocketAddr,
    pub(crate) router_admin: SocketAddr,
    pub(crate) http: reqwest::Client,
    base: String,
    /// From `up` until every pool and every gateway's every service had two healthy replicas.
    pub(crate) start_up: Duration,
}

impl ComposeMesh {
    pub(crate) async fn up(podman: Podman, name: &str) -> Self {
        podman.image();
        let project = format!("mesh-{name}-{}", std::process::id());
        let router: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let router_admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let base = format!("http://{router}");
        let mesh = Self { podman, project, router, router_admin, http, base, start_up: Duration::ZERO };
        let started = Instant::now();
        let output = mesh.compose(&["up", "-d"]);
        assert!(
            output.status.success(),
            "podman-compose up failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let mut mesh = mesh;
        let deadline = started + MESH_READY;
        loop {
            if mesh.status().await.is_some_and(|s| whole(&s)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the compose mesh was not whole after {MESH_READY:?}: {}",
                mesh.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        mesh.start_up = started.elapsed();
        println!("compose mesh {name} whole {:?} after `podman-compose up`", mesh.start_up);
        mesh
    }

    /// `podman-compose -f docker/compose.yaml -p PROJECT ARGS`, with the test images and ports.
    pub(crate) fn compose(&self, args: &[&str]) -> Output {
        self.try_compose(args).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_compose(&self, args: &[&str]) -> Result<Output, String> {
        let program = std::env::var("PODMAN_COMPOSE").unwrap_or_else(|_| "podman-compose".to_owned());
        let mut command = self.podman.command(&program);
        command
            .args(["-f", "docker/compose.yaml", "-p", &self.project])
            .args(args)
            .current_dir(repo_root())
            .env("COMPOSE_MESH_IMAGE", IMAGE)
            .env("COMPOSE_REDIS_IMAGE", REDIS_IMAGE)
            .env("COMPOSE_ROUTER_PORT", self.router.port().to_string())
            .env("COMPOSE_ROUTER_ADMIN_PORT", self.router_admin.port().to_string());
        bounded(command, COMPOSE_COMMAND)
            .map_err(|e| format!("{e:#}\n({program} is installed by scripts/test.sh, or set PODMAN_COMPOSE)"))
    }

    pub(crate) fn podman(&self) -> &Podman {
        &self.podman
    }

    /// The public API through the router container.
    pub(crate) fn api(&self) -> Api<'_> {
        Api { http: &self.http, base: &self.base }
    }

    /// The container of replica `n` (from 1) of a compose service.
    pub(crate) fn container(&self, service: &str, n: usize) -> String {
        format!("{}_{service}_{n}", self.project)
    }

    /// The router's `/mesh/status?view=full`, if it answers.
    pub(crate) async fn status(&self) -> Option<Value> {
        let url = format!("http://{}/mesh/status?view=full", self.router_admin);
        self.http.get(url).send().await.ok()?.json().await.ok()
    }

    /// Waits (up to `within`) until `pred` holds of the router's full status.
    pub(crate) async fn wait_status(
        &self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.status().await.is_some_and(|s| pred(&s)) {
                return Some(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }

    fn logs(&self) -> String {
        let names = self.podman.run(&[
            "ps",
            "-a",
            "--filter",
            &format!("name={}_", self.project),
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        format!("containers:\n{names}")
    }
}

impl Drop for ComposeMesh {
    fn drop(&mut self) {
        // Never a panic here: this also runs while a failed test unwinds.
        match self.try_compose(&["down", "-v", "-t", "5"]) {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                eprintln!("podman-compose down failed: {}", String::from_utf8_lossy(&output.stderr))
            }
            Err(e) => eprintln!("{e}"),
        }
    }
}

/// Every pool has two healthy gateways, and every gateway two healthy replicas of each service.
pub(crate) fn whole(status: &Value) -> bool {
    let pools = status["pools"].as_array().map(Vec::as_slice).unwrap_or_default();
    let gateways = status["gateways"].as_array().map(Vec::as_slice).unwrap_or_default();
    pools.len() == 2
        && pools.iter().all(|p| p["healthy_instances"] == 2)
        && gateways.len() == 4
        && gateways.iter().all(|g| {
            let services = g["services"].as_array().map(Vec::as_slice).unwrap_or_default();
            !services.is_empty() && services.iter().all(|s| s["healthy_replicas"] == 2)
        })
}

/// Healthy replicas of `service` as each gateway that uses it sees them.
pub(crate) fn healthy_replicas(status: &Value, service: &str) -> Vec<u64> {
    let gateways = status["gateways"].as_array().map(Vec::as_slice).unwrap_or_default();
    gateways
        .iter()
        .flat_map(|g| g["services"].as_array().into_iter().flatten())
        .filter(|s| s["name"] == service)
        .map(|s| s["healthy_replicas"].as_u64().unwrap_or(0))
        .collect()
}
