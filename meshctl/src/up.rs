//! `meshctl up`: the whole mesh in this process, on the documented loopback ports; with
//! `--processes`, each component its own child process ([`processes`]).

mod processes;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mesh_core::admin::{self, Readiness};
use mesh_core::shutdown::{self, Drain};
use mesh_core::store::StoreConfig;
use meshctl::{Kind, Mesh, MeshOptions};
use tokio::net::TcpListener;

#[derive(clap::Args, Debug)]
pub(crate) struct UpArgs {
    /// Redis for every component's state; without it, one in-process memory store.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Replicas of each service and gateway.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=10))]
    replicas: u16,
    /// Address every component listens on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port of this process's admin endpoints (/healthz, /readyz, /metrics).
    #[arg(long, default_value_t = 9000)]
    admin_port: u16,
    /// An email that gets the admin role when it registers (may repeat).
    #[arg(long = "admin-email", default_value = "admin@example.com")]
    admin_emails: Vec<String>,
    /// Do not add demo articles to an empty catalogue.
    #[arg(long)]
    no_seed: bool,
    /// Requests per hour allowed on the free plan (the default plan).
    #[arg(long, default_value_t = 1000)]
    free_limit: u64,
    /// Requests per second the router accepts from one client address (0: no limit).
    #[arg(long, default_value_t = 200)]
    client_rps: u32,
    /// Run each component as its own child process (the real binaries beside meshctl), so
    /// `meshctl chaos` can kill, pause and restart them; they share a Redis (--redis-url, or a
    /// redis-server started here). See docs/chaos.md.
    #[arg(long)]
    processes: bool,
    /// With --processes: where to write what was started, for `meshctl chaos`. Default:
    /// $XDG_RUNTIME_DIR/meshctl/mesh.json (or <temp dir>/meshctl-<uid>/mesh.json).
    #[arg(long, env = "MESHCTL_STATE", requires = "processes")]
    state: Option<PathBuf>,
}

pub(crate) async fn run(args: UpArgs) -> anyhow::Result<()> {
    if args.processes {
        return processes::run(args).await;
    }
    let store = StoreConfig {
        redis_url: Some(args.redis_url.clone().unwrap_or_else(|| "memory://meshctl".into())),
        ..StoreConfig::default()
    };
    let admin_emails = args.admin_emails.clone();
    let free_limit = args.free_limit;
    let client_rps = args.client_rps;
    let opts = MeshOptions {
        store,
        replicas: args.replicas,
        host: args.host,
        configure_auth: Arc::new(move |cfg: &mut auth_service::Config| {
            cfg.admin_emails = admin_emails.clone()
        }),
        configure_router: Arc::new(move |cfg: &mut gateway_router::Config| {
            cfg.limits.per_client_rps = client_rps
        }),
        configure_quota: Arc::new(move |cfg: &mut quota_service::Config| {
            if let Some(free) = cfg.plans.get_mut("free") {
                free.limit = free_limit;
            }
        }),
        ..MeshOptions::default()
    };
    let mesh = Mesh::start(opts).await?;

    let admin_addr = SocketAddr::new(args.host, args.admin_port);
    let admin_listener = TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("admin: cannot listen on {admin_addr}"))?;
    let drain = Drain::new();
    let readiness = Readiness::new(drain.clone());
    tokio::spawn(admin::serve(admin_listener, readiness.clone()));

    mesh.wait_ready(Duration::from_secs(20)).await?;
    if !args.no_seed {
        seed_catalogue(mesh.addr(Kind::Articles)).await?;
    }
    readiness.set_started();
    print_summary(&args, &mesh, admin_addr);

    shutdown::signal().await;
    println!("\nstopping: draining every component…");
    drain.trigger();
    mesh.stop().await?;
    println!("stopped.");
    Ok(())
}

fn print_summary(args: &UpArgs, mesh: &Mesh, admin: SocketAddr) {
    let store = match &args.redis_url {
        Some(url) => format!("Redis at {url}"),
        None => "in-process memory (set REDIS_URL to use Redis)".into(),
    };
    let router = mesh.addr(Kind::Router);
    println!("\nThe mesh is up. State: {store}.\n");
    println!("  {:<16} address", "component");
    for c in &mesh.components {
        println!("  {:<16} {}", c.name(), c.addr);
    }
    println!("  {:<16} http://{admin}/healthz  /readyz  /metrics", "admin");
    if let Some(router_admin) = mesh.router_admin {
        println!("  {:<16} http://{router_admin}/mesh/status  /metrics  (router admin)", "status");
    }
    println!("\nSend every request to the router: http://{router}\n");
    println!("Try it (copy and paste):\n");
    println!("{}", walkthrough(router));
    println!("Ctrl-C stops everything cleanly.");
}

/// Demo articles, so the walk-through can order something. Only into an empty catalogue.
async fn seed_catalogue(articles: SocketAddr) -> anyhow::Result<()> {
    use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
    use mesh_proto::articles::{Actor, CreateArticleRequest, ListArticlesRequest};
    let mut client = ArticlesServiceClient::connect(format!("http://{articles}")).await?;
    let existing = client
        .list_articles(ListArticlesRequest { query: String::new(), limit: 1, cursor: String::new() })
        .await?;
    if !existing.into_inner().articles.is_empty() {
        return Ok(());
    }
    let actor = Actor { user_id: "meshctl".into(), roles: vec!["admin".into()] };
    for (title, body, price_cents, stock) in [
        ("Blue teapot", "Stoneware, holds a litre.", 2450, 100),
        ("Tea cups (set of 4)", "Matching the blue teapot.", 1800, 200),
        ("Loose-leaf sencha", "100 g, first flush.", 950, 500),
    ] {
        let request = CreateArticleRequest {
            actor: Some(actor.clone()),
            title: title.into(),
            body: body.into(),
            price_cents,
            stock,
        };
        client.create_article(request).await.context("seeding the demo catalogue")?;
    }
    Ok(())
}

fn walkthrough(router: SocketAddr) -> String {
    format!(
        r#"  R=http://{router}
  curl -s -X POST $R/v1/auth/register -H 'content-type: application/json' \
    -d '{{"email":"ada@example.com","password":"correct horse battery","display_name":"Ada"}}'
  TOKEN=$(curl -s -X POST $R/v1/auth/login -H 'content-type: application/json' \
    -d '{{"email":"ada@example.com","password":"correct horse battery"}}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s $R/v1/users/me -H "authorization: Bearer $TOKEN"
  ARTICLE=$(curl -s "$R/v1/articles?q=sencha" -H "authorization: Bearer $TOKEN" | sed 's/.*"id":"\([^"]*\)".*/\1/')
  curl -s -X POST $R/v1/orders -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -H 'idempotency-key: order-1' -d "{{\"items\":[{{\"article_id\":\"$ARTICLE\",\"quantity\":1}}]}}"
  curl -s $R/v1/orders -H "authorization: Bearer $TOKEN"
  curl -s $R/v1/dashboard -H "authorization: Bearer $TOKEN"
"#
    )
}
