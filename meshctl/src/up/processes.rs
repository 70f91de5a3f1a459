//! `meshctl up --processes`: the same mesh as `meshctl up` (same ports, same replicas), each
//! component its own child process running the real binary beside `meshctl`, so a kill is a
//! real crash (docs/chaos.md).
//!
//! - Replicas must share state, so the children share one Redis: `--redis-url`, or a
//!   `redis-server` child of its own on a free port (itself an instance `meshctl chaos redis
//!   down|up` acts on).
//! - Every child is configured through `MESH_*` environment variables (nothing inherited but
//!   `MESH_LOG`, `OTEL_*`, `PATH`, `HOME`), with `admin_faults` on so `meshctl chaos delay|fail`
//!   can reach its fault layer; each runs in a process group of its own that dies with
//!   `meshctl` ([`Guard`]), and logs to a file of its own.
//! - What was started is written to the state file ([`MeshState`]); `meshctl chaos` reads it,
//!   signals processes itself (`kill`, `pause`) and asks this process to restart one
//!   (`POST /control/restart/{name}` on the admin port): only the parent can start a child in
//!   its process group again. A child that exits is reported, never restarted on its own: a
//!   crash stays visible until someone restarts it.
//! - Ctrl-C (or SIGTERM) drains them all, the edge first, each given [`DRAIN_GRACE`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mesh_core::admin::{self, Readiness};
use mesh_core::shutdown::{self, Drain};
use meshctl::Kind;
use meshctl::mesh::REPLICA_PORT_STEP;
use tokio::process::Command;
use tokio::sync::Mutex;

use super::UpArgs;
use crate::bench::conn;
use crate::procs::{self, Guard};
use crate::state::{Instance, MeshState};

/// Time one child is given to become ready (debug builds on a busy machine are slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a child is given to drain after SIGTERM before its group is killed: a service's drain
/// timeout (10s) and a little.
const DRAIN_GRACE: Duration = Duration::from_secs(12);
/// How often children are looked at for an exit.
const WATCH: Duration = Duration::from_millis(250);

/// How to start one child, again and again.
#[derive(Clone, Debug)]
struct Spec {
    name: String,
    kind: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    log: PathBuf,
    /// Start order and reverse stop order: redis 0, services 1, gateways 2, router 3.
    tier: u8,
}

#[derive(Debug)]
struct Child {
    spec: Spec,
    guard: Option<Guard>,
}

/// Every child, and the state file that describes them.
#[derive(Debug)]
pub(crate) struct Supervisor {
    children: Vec<Child>,
    state: MeshState,
    state_path: PathBuf,
}

// === impl Supervisor ===

impl Supervisor {
    /// Starts `child` and waits until it is ready.
    async fn start(&mut self, index: usize) -> anyhow::Result<u32> {
        let spec = self.children[index].spec.clone();
        let mut command = Command::new(&spec.program);
        command.args(&spec.args).env_clear();
        for (key, value) in std::env::vars() {
            let passed = key == "PATH" || key == "HOME" || key == "MESH_LOG" || key.starts_with("OTEL_");
            if passed {
                command.env(key, value);
            }
        }
        command.envs(spec.env.iter().map(|(k, v)| (k, v)));
        let mut guard = Guard::spawn(&spec.name, command, spec.log.clone())?;
        let pid = guard.pid().unwrap_or(0);
        let what = format!("{} to be ready", spec.name);
        procs::wait_until(&what, START_TIMEOUT, || {
            let running = guard.ensure_running();
            let spec = &spec;
            async move {
                running?;
                Ok(match spec.admin {
                    Some(admin) => conn::answers_ok(admin, "/readyz").await,
                    None => tokio::net::TcpStream::connect(spec.addr).await.is_ok(),
                })
            }
        })
        .await?;
        self.children[index].guard = Some(guard);
        self.set_pid(&spec.name, Some(pid));
        Ok(pid)
    }

    fn set_pid(&mut self, name: &str, pid: Option<u32>) {
        if let Some(instance) = self.state.instances.iter_mut().find(|i| i.name == name) {
            instance.pid = pid;
        }
    }

    fn write_state(&self) -> anyhow::Result<()> {
        self.state.write(&self.state_path)
    }

    /// Kills `name` if it still runs, starts it again on the same addresses, waits until it is
    /// ready; its new pid.
    pub(crate) async fn restart(&mut self, name: &str) -> anyhow::Result<u32> {
        let index = self
            .children
            .iter()
            .position(|c| c.spec.name == name)
            .with_context(|| format!("no instance {name:?}"))?;
        if let Some(guard) = self.children[index].guard.take() {
            guard.stop().await;
        }
        self.set_pid(name, None);
        let result = self.start(index).await;
        self.write_state()?;
        let pid = result?;
        println!("{name} restarted (pid {pid})");
        Ok(pid)
    }

    /// Reports every child that exited since the last look.
    fn reap(&mut self) -> anyhow::Result<()> {
        let mut changed = Vec::new();
        for child in &mut self.children {
            if let Some(status) = child.guard.as_mut().and_then(Guard::try_wait) {
                println!(
                    "{} exited ({status}); `meshctl chaos restart {}` starts it again",
                    child.spec.name, child.spec.name
                );
                child.guard = None;
                changed.push(child.spec.name.clone());
            }
        }
        for name in &changed {
            self.set_pid(name, None);
        }
        if !changed.is_empty() {
            self.write_state()?;
        }
        Ok(())
    }

    /// Drains every child, the edge first, each tier at once.
    async fn stop_all(&mut self) {
        for tier in (0..=3).rev() {
            let stopping: Vec<_> = self
                .children
                .iter_mut()
                .filter(|c| c.spec.tier == tier)
                .filter_map(|c| c.guard.take())
                .map(|guard| guard.terminate(DRAIN_GRACE))
                .collect();
            futures_join_all(stopping).await;
        }
        let _ = std::fs::remove_file(&self.state_path);
    }
}

/// Awaits every future (a handful), concurrently.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(futures: Vec<F>) {
    let mut set = tokio::task::JoinSet::new();
    for future in futures {
        set.spawn(future);
    }
    while set.join_next().await.is_some() {}
}

/// The admin port of replica 1 (each binary's default); replica `r` adds `(r - 1) * 100`.
fn admin_base_port(kind: Kind) -> u16 {
    match kind {
        Kind::Auth => 9051,
        Kind::User => 9052,
        Kind::Quota => 9053,
        Kind::Orders => 9054,
        Kind::Articles => 9055,
        Kind::Analytics => 9056,
        Kind::IdentityGateway => 9081,
        Kind::BusinessGateway => 9082,
        Kind::Router => 9080,
    }
}

fn endpoints(addrs: &[SocketAddr]) -> String {
    addrs.iter().map(|a| format!("http://{a}")).collect::<Vec<_>>().join(",")
}

/// Every child's spec, in start order.
fn specs(args: &UpArgs, dir: &Path, store: &str, redis: Option<(PathBuf, u16)>) -> anyhow::Result<Vec<Spec>> {
    let this = std::env::current_exe().context("finding this program")?;
    let host = args.host;
    let logs = dir.join("logs");
    let mut specs = Vec::new();
    if let Some((program, port)) = redis {
        let redis_dir = dir.join("redis");
        std::fs::create_dir_all(&redis_dir)?;
        let command = procs::redis_command(&program, host, port, &redis_dir);
        let args = command.as_std().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        specs.push(Spec {
            name: "redis".into(),
            kind: "redis".into(),
            program,
            args,
            env: Vec::new(),
            addr: SocketAddr::new(host, port),
            admin: None,
            log: logs.join("redis.log"),
            tier: 0,
        });
    }
    let replicas = |kind: Kind| if kind == Kind::Router { 1 } else { args.replicas };
    let addrs = |kind: Kind, port: fn(Kind) -> u16| -> Vec<SocketAddr> {
        (1..=replicas(kind))
            .map(|r| SocketAddr::new(host, port(kind) + (r - 1) * REPLICA_PORT_STEP))
            .collect()
    };
    let kinds =
        Kind::SERVICES.into_iter().chain([Kind::IdentityGateway, Kind::BusinessGateway, Kind::Router]);
    let log_filter = "warn,mesh_core::process=info".to_owned();
    for kind in kinds {
        let program = this.with_file_name(kind.binary());
        anyhow::ensure!(
            program.is_file(),
            "{} is not built: `cargo build --bins` builds every binary beside meshctl",
            program.display()
        );
        let mains = addrs(kind, Kind::base_port);
        let admins = addrs(kind, admin_base_port);
        for (r, (addr, admin)) in mains.iter().zip(&admins).enumerate() {
            let name = format!("{}-{}", kind.name(), r + 1);
            let mut env: Vec<(String, String)> = vec![
                ("MESH_LISTEN".into(), addr.to_string()),
                ("MESH_ADMIN_LISTEN".into(), admin.to_string()),
                ("MESH_LOG".into(), std::env::var("MESH_LOG").unwrap_or_else(|_| log_filter.clone())),
            ];
            let mut set = |key: &str, value: String| env.push((key.into(), value));
            set("MESH_ADMIN_FAULTS", "true".into());
            if kind != Kind::Router {
                set("MESH_STORE__REDIS_URL", store.into());
            }
            match kind {
                Kind::Auth => set("MESH_ADMIN_EMAILS", args.admin_emails.join(",")),
                Kind::Quota => set("MESH_PLANS__FREE__LIMIT", args.free_limit.to_string()),
                Kind::Orders => {
                    set("MESH_ARTICLES__ENDPOINTS", endpoints(&addrs(Kind::Articles, Kind::base_port)))
                }
                Kind::IdentityGateway | Kind::BusinessGateway => {
                    set("MESH_INSTANCE", name.clone());
                    for service in Kind::SERVICES {
                        let key = format!("MESH_SERVICES__{}__ENDPOINTS", service.name().to_uppercase());
                        set(&key, endpoints(&addrs(service, Kind::base_port)));
                    }
                }
                Kind::Router => {
                    let instances = |kind| {
                        addrs(kind, Kind::base_port)
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    set("MESH_POOLS__IDENTITY__INSTANCES", instances(Kind::IdentityGateway));
                    set("MESH_POOLS__BUSINESS__INSTANCES", instances(Kind::BusinessGateway));
                    set("MESH_LIMITS__PER_CLIENT_RPS", args.client_rps.to_string());
                }
                _ => {}
            }
            let tier = match kind {
                Kind::IdentityGateway | Kind::BusinessGateway => 2,
                Kind::Router => 3,
                _ => 1,
            };
            specs.push(Spec {
                log: logs.join(format!("{name}.log")),
                name,
                kind: kind.name().into(),
                program: program.clone(),
                args: Vec::new(),
                env,
                addr: *addr,
                admin: Some(*admin),
                tier,
            });
        }
    }
    Ok(specs)
}

/// Refuses to start over a mesh that still runs with the same state file.
fn ensure_no_running_mesh(path: &Path) -> anyhow::Result<()> {
    if let Ok(state) = MeshState::read(path) {
        anyhow::ensure!(
            !Path::new(&format!("/proc/{}", state.pid)).exists(),
            "a mesh started by meshctl (pid {}) is running with the state file {}; stop it first, or \
             give this one another --state",
            state.pid,
            path.display()
        );
    }
    Ok(())
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let state_path = args.state.clone().unwrap_or_else(crate::state::default_path);
    ensure_no_running_mesh(&state_path)?;
    let dir = state_path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let logs = dir.join("logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    procs::raise_open_file_limit();

    let (store, redis) = match &args.redis_url {
        Some(url) => (url.clone(), None),
        None => {
            let program = procs::find_program("redis-server").context(
                "processes share state through Redis: install redis-server (Debian: apt-get install \
                 redis-server) or give --redis-url",
            )?;
            let port = procs::free_port(args.host)?;
            (format!("redis://{}", SocketAddr::new(args.host, port)), Some((program, port)))
        }
    };
    let specs = specs(&args, &dir, &store, redis.clone())?;
    let control = SocketAddr::new(args.host, args.admin_port);
    let router_spec = specs.iter().find(|s| s.tier == 3).context("a router")?;
    let state = MeshState {
        pid: std::process::id(),
        control,
        router: router_spec.addr,
        router_admin: router_spec.admin.context("the router's admin")?,
        store: store.clone(),
        logs: logs.clone(),
        instances: specs
            .iter()
            .map(|s| Instance {
                name: s.name.clone(),
                kind: s.kind.clone(),
                pid: None,
                addr: s.addr,
                admin: s.admin,
                log: s.log.clone(),
            })
            .collect(),
    };
    let children = specs.into_iter().map(|spec| Child { spec, guard: None }).collect();
    let supervisor = Arc::new(Mutex::new(Supervisor { children, state, state_path: state_path.clone() }));

    let admin_listener = tokio::net::TcpListener::bind(control)
        .await
        .with_context(|| format!("admin: cannot listen on {control} (is another mesh running?)"))?;
    let drain = Drain::new();
    let readiness = Readiness::new(drain.clone());
    let control_routes = axum::Router::new()
        .route("/control/restart/{name}", post(restart))
        .route("/control/state", get(state_view))
        .with_state(supervisor.clone());
    let app = admin::router(readiness.clone()).merge(control_routes);
    tokio::spawn({
        let drain = drain.clone();
        async move { axum::serve(admin_listener, app).with_graceful_shutdown(drain.signaled()).await }
    });

    // Started inside the select, so Ctrl-C during a slow start still stops what did start.
    let started = async {
        let mut supervisor = supervisor.lock().await;
        for tier in 0..=3 {
            let indices: Vec<usize> = (0..supervisor.children.len())
                .filter(|&i| supervisor.children[i].spec.tier == tier)
                .collect();
            for index in indices {
                supervisor.start(index).await?;
            }
        }
        supervisor.write_state()?;
        anyhow::Ok(())
    };
    let outcome = tokio::select! {
        result = started => result,
        () = shutdown::signal() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    if let Err(e) = outcome {
        supervisor.lock().await.stop_all().await;
        return Err(e);
    }
    let view = supervisor.lock().await.state.clone();
    wait_pools_healthy(view.router_admin).await?;
    if !args.no_seed {
        let articles = view.instance("articles-1")?.addr;
        super::seed_catalogue(articles).await?;
    }
    readiness.set_started();
    print_summary(&view, &state_path, args.redis_url.is_none());

    let mut watch = tokio::time::interval(WATCH);
    let signal = shutdown::signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            _ = watch.tick() => supervisor.lock().await.reap()?,
        }
    }
    println!("\nstopping: draining every process…");
    drain.trigger();
    supervisor.lock().await.stop_all().await;
    println!("stopped.");
    Ok(())
}

/// Waits until the router sees every gateway of every pool healthy, so a chaos run starts
/// from a whole mesh.
async fn wait_pools_healthy(router_admin: SocketAddr) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let url = format!("http://{router_admin}/mesh/status?format=json");
    procs::wait_until("the router to see every gateway healthy", START_TIMEOUT, || {
        let request = client.get(&url).send();
        async move {
            let Ok(response) = request.await else { return Ok(false) };
            let Ok(view) = response.json::<serde_json::Value>().await else { return Ok(false) };
            let pools = view["pools"].as_array().cloned().unwrap_or_default();
            Ok(!pools.is_empty()
                && pools.iter().all(|p| {
                    let instances = p["instances"].as_array().map_or(0, Vec::len) as u64;
                    instances > 0 && p["healthy_instances"].as_u64() == Some(instances)
                }))
        }
    })
    .await
}

fn print_summary(state: &MeshState, state_path: &Path, own_redis: bool) {
    let store = if own_redis {
        format!("a redis-server of its own at {} (every replica shares it)", state.store)
    } else {
        format!("Redis at {}", state.store)
    };
    println!("\nThe mesh is up, each component its own process. State: {store}.\n");
    println!("  {:<16} {:>8}  {:<22} admin", "instance", "pid", "address");
    for i in &state.instances {
        let admin = i.admin.map_or_else(|| "-".to_owned(), |a| a.to_string());
        println!("  {:<16} {:>8}  {:<22} {admin}", i.name, i.pid.unwrap_or(0), i.addr.to_string());
    }
    println!(
        "  {:<16} {:>8}  http://{}/healthz  /readyz  /control/restart/NAME",
        "meshctl", state.pid, state.control
    );
    println!("\nSend every request to the router: http://{}", state.router);
    println!("Status: meshctl status --router http://{}", state.router_admin);
    println!("State file: {}   logs: {}", state_path.display(), state.logs.display());
    println!("Break it: meshctl chaos kill identity-gw-1   (docs/chaos.md)\n");
    println!("Try it (copy and paste):\n");
    println!("{}", super::walkthrough(state.router));
    println!("Ctrl-C stops everything cleanly.");
}

/// `POST /control/restart/{name}`: starts `name` again (killed first if it still runs).
async fn restart(
    State(supervisor): State<Arc<Mutex<Supervisor>>>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let mut supervisor = supervisor.lock().await;
    if !supervisor.children.iter().any(|c| c.spec.name == name) {
        return (StatusCode::NOT_FOUND, format!("no instance {name:?}\n")).into_response();
    }
    match supervisor.restart(&name).await {
        Ok(pid) => axum::Json(serde_json::json!({"name": name, "pid": pid})).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

/// `GET /control/state`: the state file's content.
async fn state_view(State(supervisor): State<Arc<Mutex<Supervisor>>>) -> Response {
    axum::Json(supervisor.lock().await.state.clone()).into_response()
}
