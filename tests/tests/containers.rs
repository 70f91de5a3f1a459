//! The shipped image and compose file, run for real with podman: every binary in the image as
//! its non-root user on a read-only root, the compose mesh through the walk-through, a gateway
//! container killed under load, and a service container stopped and started again.
//!
//! The image is what `scripts/image.sh --from-host` makes of this checkout's dev binaries; the
//! compose file is `docker/compose.yaml` as shipped, with only its documented variables set
//! (image names and the router's host ports). See support/containers.rs for what runs where.

mod support;

use std::time::{Duration, Instant};

use mesh_tests::load::{self, Spec};
use meshctl::Kind;
use reqwest::Method;
use serde_json::{Value, json};
use support::ADMIN_EMAIL;
use support::chaos::mixed_request;
use support::containers::{ComposeMesh, Podman, exclusive, healthy_replicas, podman};

/// The user every container runs as (the Dockerfile's USER, the manifests' runAsUser).
const NON_ROOT: u32 = 65532;

/// The real and effective user and group ids of a process, from /proc.
fn ids(pid: u32) -> (Vec<u32>, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect()
    };
    (field("Uid:"), field("Gid:"))
}

/// Containers of one test, and the network they share, removed when dropped.
struct Containers<'a> {
    podman: &'a Podman,
    network: String,
    names: Vec<String>,
}

impl Drop for Containers<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            self.podman.try_run(&["rm", "-f", "-t", "2", name]);
        }
        self.podman.try_run(&["network", "rm", "-f", &self.network]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_runs_every_binary_as_non_root() {
    let Some(podman) = podman() else { return };
    let _one = exclusive().await;
    let image = podman.image();
    let size: u64 = podman.run(&["image", "inspect", "--format", "{{.Size}}", image]).parse().unwrap();
    assert_eq!(podman.run(&["image", "inspect", "--format", "{{.Config.User}}", image]), "65532:65532");

    let network = format!("mesh-image-{}", std::process::id());
    podman.run(&["network", "create", &network]);
    let mut containers = Containers { podman: &podman, network: network.clone(), names: Vec::new() };
    // Each binary alone, on its embedded defaults, listening on every interface of its own
    // container; meshctl as `meshctl up`, the whole mesh in one process.
    let admin_port = 9900;
    let mut commands: Vec<(String, Vec<String>)> = [
        Kind::Router,
        Kind::IdentityGateway,
        Kind::BusinessGateway,
        Kind::Auth,
        Kind::User,
        Kind::Quota,
        Kind::Orders,
        Kind::Articles,
        Kind::Analytics,
    ]
    .iter()
    .map(|kind| {
        let bin = kind.binary();
        let env = vec![
            format!("MESH_LISTEN=0.0.0.0:{}", kind.base_port()),
            format!("MESH_ADMIN_LISTEN=0.0.0.0:{admin_port}"),
        ];
        (bin.to_owned(), [env, vec![format!("/usr/local/bin/{bin}")]].concat())
    })
    .collect();
    commands.push((
        "meshctl".to_owned(),
        ["/usr/local/bin/meshctl", "up", "--host", "0.0.0.0", "--admin-port", &admin_port.to_string()]
            .map(str::to_owned)
            .to_vec(),
    ));
    for (bin, command) in &commands {
        let name = format!("{network}-{bin}");
        let (env, argv): (Vec<&String>, Vec<&String>) = command.iter().partition(|a| a.starts_with("MESH_"));
        let mut args: Vec<&str> = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &network,
            // As the manifests run it: a read-only root with nothing writable mounted, no
            // capabilities, no privilege escalation.
            "--read-only",
            "--read-only-tmpfs=false",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
        ];
        for var in &env {
            args.extend(["-e", var.as_str()]);
        }
        args.push(image);
        args.extend(argv.iter().map(|a| a.as_str()));
        podman.run(&args);
        containers.names.push(name);
    }

    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let started = Instant::now();
    for (name, (bin, _)) in containers.names.iter().zip(&commands) {
        let ip = podman.ip(name);
        let url = format!("http://{ip}:{admin_port}/healthz");
        let healthy = loop {
            let answer = http.get(&url).send().await.ok().map(|r| r.status().as_u16());
            if answer == Some(200) {
                break true;
            }
            if started.elapsed() > Duration::from_secs(60) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let logs = || String::from_utf8_lossy(&podman.try_run(&["logs", name]).stderr).into_owned();
        assert!(healthy, "{bin} in its container did not answer {url} with 200 within 60 s:\n{}", logs());
        let (uid, gid) = ids(podman.pid(name));
        assert!(uid.iter().all(|&id| id == NON_ROOT), "{bin} runs as uid {uid:?}");
        assert!(gid.iter().all(|&id| id == NON_ROOT), "{bin} runs as gid {gid:?}");
        let read_only = podman.run(&["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name]);
        assert_eq!(read_only, "true", "{bin}'s root filesystem");
        println!(
            "{bin:<18} healthy at {:>6.2?} after the containers started, uid/gid {NON_ROOT}, read-only root",
            started.elapsed()
        );
    }
    println!("image {image}: {} MiB, {} binaries", size / (1024 * 1024), commands.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_mesh_passes_the_walkthrough() {
    let Some(podman) = podman() else { return };
    let _one = exclusive().await;
    let mesh = ComposeMesh::up(podman, "walk").await;
    let api = mesh.api();

    // Register and log in; admin@example.com is made admin by compose's MESH_ADMIN_EMAILS.
    let token = api.token("walk@example.com").await;
    let admin = api.token(ADMIN_EMAIL).await;
    let (status, me) = api.call(Method::GET, "/v1/users/me", Some(&token), None, &[]).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "walk@example.com");

    let article = api.article_by(&admin, "Container teapot", 1250, 10).await;

    // An order, twice with one Idempotency-Key: one order, stock taken once.
    let order = json!({"items": [{"article_id": article, "quantity": 2}]});
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, created) = api
            .call(
                Method::POST,
                "/v1/orders",
                Some(&token),
                Some(order.clone()),
                &[("idempotency-key", "c-1")],
            )
            .await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["total_cents"], 2500);
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1]);
    let (_, stock) = api.call(Method::GET, &format!("/v1/articles/{article}"), Some(&token), None, &[]).await;
    assert_eq!(stock["stock"], 8, "{stock}");

    let (status, event) = api
        .call(
            Method::POST,
            "/v1/analytics/events",
            Some(&token),
            Some(json!({"type": "page.view", "properties": {"path": "/"}})),
            &[],
        )
        .await;
    assert_eq!(status, 202, "{event}");
    let (status, dashboard) = api.call(Method::GET, "/v1/dashboard", Some(&token), None, &[]).await;
    assert_eq!(status, 200, "{dashboard}");
    assert_eq!(dashboard["recent_orders"]["status"], "ok", "{dashboard}");
    assert_eq!(dashboard["recent_orders"]["data"][0]["id"], ids[0].as_str());
    assert_eq!(dashboard["articles"]["status"], "ok", "{dashboard}");
    assert_eq!(dashboard["activity"]["status"], "ok", "{dashboard}");
    assert_eq!(dashboard["activity"]["data"]["total"], 1, "{dashboard}");
    println!(
        "walk-through through the router container: register, login, article, order, event, dashboard: ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_gateway_container_under_load_loses_no_request() {
    let Some(podman) = podman() else { return };
    let _one = exclusive().await;
    let mesh = ComposeMesh::up(podman, "kill").await;
    let api = mesh.api();
    // The mesh as shipped meters every user (1,000 requests an hour on the free plan) and
    // rate-limits every client address (200/s): the load comes from four users and keeps under
    // the rate, as honest clients do. Each of the 8 workers sends at most one request per 50 ms.
    let mut tokens = Vec::new();
    for n in 0..4 {
        tokens.push(api.token(&format!("container-load-{n}@example.com")).await);
    }
    let tokens = std::sync::Arc::new(tokens);
    let article = api.article().await;
    load::assert_loopback(mesh.router.ip());

    let victim = mesh.container("identity-gateway", 1);
    // The chaos schedule: `podman kill` (SIGKILL) 3 s into 10 s of load; then how long until the
    // router has taken the dead gateway out of its pool.
    let kill_at = Duration::from_secs(3);
    let killer = async {
        tokio::time::sleep(kill_at).await;
        let name = victim.clone();
        let output =
            tokio::task::spawn_blocking(move || Podman.try_run(&["kill", "--signal", "KILL", &name]))
                .await
                .unwrap();
        assert!(output.status.success(), "podman kill: {}", String::from_utf8_lossy(&output.stderr));
        let killed = Instant::now();
        let ejected =
            mesh.wait_status(Duration::from_secs(5), |s| pool(s, "identity")["healthy_instances"] == 1).await;
        (killed, ejected)
    };
    let (load_http, load_base) = (mesh.http.clone(), mesh.api().base.to_owned());
    let spec = Spec { workers: 8, duration: Duration::from_secs(10), max_requests: 200_000 };
    let report = load::run_paced(spec, Duration::from_millis(50), move |n| {
        let (http, base, article) = (load_http.clone(), load_base.clone(), article.clone());
        let token = tokens[(n as usize / 4) % tokens.len()].clone();
        async move { mixed_request(&http, &base, &token, &article, n).await }
    });
    let (report, (killed, ejected)) = tokio::join!(report, killer);
    println!("podman kill of {victim} at 3 s of 10 s of load: {}", report.summary());
    match ejected {
        Some(took) => println!("the router took it out of the pool {took:?} after the kill"),
        None => println!("the router was not seen without it (it came back within 5 s?)"),
    }
    let failed: Vec<_> = report.failed().iter().map(|s| (s.at, s.label, s.status)).take(20).collect();
    assert!(failed.is_empty(), "failed requests: {failed:?}");

    // Started again (podman, unlike Docker, counts a `podman kill` as stopped by the user, so
    // the restart policy leaves it down): the router admits it once its health checks pass.
    println!("{victim} killed {:?} ago; starting it again", killed.elapsed());
    let restarted = Instant::now();
    mesh.podman().run(&["start", &victim]);
    let admitted = mesh
        .wait_status(Duration::from_secs(60), |s| pool(s, "identity")["healthy_instances"] == 2)
        .await
        .expect("the killed gateway container, started again, was not back in the pool within 60 s");
    println!(
        "{victim}: back in the pool {:?} after `podman start` ({admitted:?} of waiting)",
        restarted.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_service_container_rejoins() {
    let Some(podman) = podman() else { return };
    let _one = exclusive().await;
    let mesh = ComposeMesh::up(podman, "rejoin").await;
    let api = mesh.api();
    let token = api.token("rejoin@example.com").await;
    let victim = mesh.container("orders", 1);

    // A graceful stop (SIGTERM, drain): every business gateway sees one orders replica left, and
    // the orders routes keep answering from the other.
    let stopped = Instant::now();
    mesh.podman().run(&["stop", "-t", "30", &victim]);
    let drained = stopped.elapsed();
    let gone = mesh
        .wait_status(Duration::from_secs(30), |s| healthy_replicas(s, "orders").iter().all(|&n| n == 1))
        .await
        .expect("the gateways still count the stopped orders replica as healthy");
    for _ in 0..10 {
        let (status, body) = api.call(Method::GET, "/v1/orders", Some(&token), None, &[]).await;
        assert_eq!(status, 200, "with one orders replica stopped: {body}");
    }

    let started = Instant::now();
    mesh.podman().run(&["start", &victim]);
    let rejoined = mesh
        .wait_status(Duration::from_secs(60), |s| healthy_replicas(s, "orders").iter().all(|&n| n == 2))
        .await
        .expect("the restarted orders replica was not healthy on every gateway within 60 s");

    // And it serves: requests through the router reach it (its own count of orders calls).
    let metrics = format!("http://{}:9054/metrics", mesh.podman().ip(&victim));
    let served = |text: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("grpc_server_requests_total{method=\"/mesh.orders.v1.OrdersService/"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let mut sent = 0;
    let mut reached = 0;
    while sent < 200 {
        let (status, body) = api.call(Method::GET, "/v1/orders", Some(&token), None, &[]).await;
        assert_eq!(status, 200, "{body}");
        sent += 1;
        if sent % 10 == 0 {
            reached = served(&mesh.http.get(&metrics).send().await.unwrap().text().await.unwrap());
            if reached > 0 {
                break;
            }
        }
    }
    println!(
        "{victim}: stopped in {drained:?} (drain), out of every gateway {gone:?} after, started again and healthy on every gateway {rejoined:?} after `podman start` ({:?}); served {reached} orders calls of the first {sent} requests",
        started.elapsed()
    );
    assert!(reached > 0, "the restarted replica served none of {sent} orders requests");
}

fn pool<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["pools"]
        .as_array()
        .and_then(|pools| pools.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}
