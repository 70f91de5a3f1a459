//! `meshctl up`: every service, with replicas, in this process.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use mesh_core::admin::{self, Readiness};
use mesh_core::process::Shutdown;
use mesh_core::shutdown::{self, Drain};
use mesh_core::store::StoreConfig;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Replica `r` of a service listens on its base port plus `r * REPLICA_PORT_STEP`.
const REPLICA_PORT_STEP: u16 = 100;

#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// Redis for every component's state; without it, one in-process memory store.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Replicas of each service.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=10))]
    replicas: u16,
    /// Address every component listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of this process's admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, default_value_t = 9000)]
    admin_port: u16,
}

/// One running component.
struct Started {
    name: String,
    addr: SocketAddr,
}

/// Components started so far, and the tasks serving them.
struct Mesh {
    drain: Drain,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
    started: Vec<Started>,
}

impl Mesh {
    async fn start<C, F, Fut>(&mut self, name: String, addr: SocketAddr, cfg: C, serve: F) -> anyhow::Result<()>
    where
        F: FnOnce(C, TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("{name}: cannot listen on {addr} (is another mesh running?)"))?;
        let serving = serve(cfg, listener, Box::pin(self.drain.signaled()));
        self.tasks.spawn({
            let name = name.clone();
            async move { (name, serving.await) }
        });
        self.started.push(Started { name, addr });
        Ok(())
    }
}

/// Starts `replicas` copies of one service. `$configure` adjusts each replica's default config.
macro_rules! start_replicas {
    ($mesh:expr, $args:expr, $store:expr, $krate:ident, $name:literal, $port:expr, |$cfg:ident| $configure:block) => {
        for replica in 0..$args.replicas {
            let addr = SocketAddr::new($args.host, $port + replica * REPLICA_PORT_STEP);
            let mut $cfg = $krate::Config::default();
            $cfg.listen = addr;
            $cfg.store = $store.clone();
            $configure
            $mesh.start(format!("{}-{}", $name, replica + 1), addr, $cfg, $krate::serve).await?;
        }
    };
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    let store = StoreConfig {
        redis_url: Some(args.redis_url.clone().unwrap_or_else(|| "memory://meshctl".into())),
        ..StoreConfig::default()
    };
    let endpoints = |port: u16| -> Vec<String> {
        (0..args.replicas).map(|r| format!("http://{}", SocketAddr::new(args.host, port + r * REPLICA_PORT_STEP))).collect()
    };
    let mut mesh = Mesh { drain: Drain::new(), tasks: JoinSet::new(), started: Vec::new() };

    start_replicas!(mesh, args, store, auth_service, "auth", 50051, |cfg| {});
    start_replicas!(mesh, args, store, user_service, "user", 50052, |cfg| {});
    start_replicas!(mesh, args, store, quota_service, "quota", 50053, |cfg| {});
    start_replicas!(mesh, args, store, articles_service, "articles", 50055, |cfg| {});
    start_replicas!(mesh, args, store, orders_service, "orders", 50054, |cfg| {
        cfg.articles.endpoints = endpoints(50055);
    });
    start_replicas!(mesh, args, store, analytics_service, "analytics", 50056, |cfg| {});

    let admin_addr = SocketAddr::new(args.host, args.admin_port);
    let admin_listener =
        TcpListener::bind(admin_addr).await.with_context(|| format!("admin: cannot listen on {admin_addr}"))?;
    let readiness = Readiness::new(mesh.drain.clone());
    tokio::spawn(admin::serve(admin_listener, readiness.clone()));

    wait_for_health(&mesh.started).await?;
    readiness.set_started();
    print_summary(&args, &mesh.started, admin_addr);

    tokio::select! {
        () = shutdown::signal() => {}
        Some(ended) = mesh.tasks.join_next() => {
            let (name, result) = ended.context("a component panicked")?;
            mesh.drain.trigger();
            result.with_context(|| format!("{name} stopped"))?;
            anyhow::bail!("{name} stopped unexpectedly");
        }
    }
    println!("\nstopping: draining every component…");
    mesh.drain.trigger();
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(ended) = mesh.tasks.join_next().await {
            if let Ok((name, Err(e))) = ended {
                tracing::warn!(component = %name, error = %e, "component ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some components did not drain within 15s; exiting anyway");
    }
    println!("stopped.");
    Ok(())
}

/// Waits (at most 10 s) until every component answers `grpc.health.v1` with SERVING.
async fn wait_for_health(started: &[Started]) -> anyhow::Result<()> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for component in started {
        loop {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", component.addr))?
                .connect_timeout(Duration::from_millis(500));
            let serving = match endpoint.connect().await {
                Ok(channel) => HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1),
                Err(_) => false,
            };
            if serving {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} did not become healthy on {} within 10s",
                component.name,
                component.addr
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn print_summary(args: &UpArgs, started: &[Started], admin: SocketAddr) {
    let store = match &args.redis_url {
        Some(url) => format!("Redis at {url}"),
        None => "in-process memory (set REDIS_URL to use Redis)".into(),
    };
    println!("\nThe mesh is up. State: {store}.\n");
    println!("  {:<14} {}", "component", "gRPC address");
    for s in started {
        println!("  {:<14} {}", s.name, s.addr);
    }
    println!("\n  admin          http://{admin}/healthz  /readyz  /metrics");
    println!("\nEvery service serves grpc.health.v1 and its mesh.<service>.v1 API (see proto/).");
    println!("The HTTP gateways and the front router are not built yet (see the README's roadmap).");
    println!("\nCtrl-C stops everything cleanly.");
}
