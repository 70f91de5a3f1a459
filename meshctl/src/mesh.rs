//! Starting and stopping the whole mesh in this process.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mesh_core::client::ClientConfig;
use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use mesh_core::store::StoreConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Replica `r` of a component listens on its base port plus `r * REPLICA_PORT_STEP`.
pub const REPLICA_PORT_STEP: u16 = 100;

/// The kinds of component, with their base ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Auth,
    User,
    Quota,
    Orders,
    Articles,
    Analytics,
    IdentityGateway,
    BusinessGateway,
    Router,
}

impl Kind {
    pub const SERVICES: [Kind; 6] =
        [Kind::Auth, Kind::User, Kind::Quota, Kind::Articles, Kind::Orders, Kind::Analytics];

    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::User => "user",
            Self::Quota => "quota",
            Self::Orders => "orders",
            Self::Articles => "articles",
            Self::Analytics => "analytics",
            Self::IdentityGateway => "identity-gw",
            Self::BusinessGateway => "business-gw",
            Self::Router => "router",
        }
    }

    /// The workspace binary that runs this component on its own.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Auth => "auth-service",
            Self::User => "user-service",
            Self::Quota => "quota-service",
            Self::Orders => "orders-service",
            Self::Articles => "articles-service",
            Self::Analytics => "analytics-service",
            Self::IdentityGateway => "identity-gateway",
            Self::BusinessGateway => "business-gateway",
            Self::Router => "gateway-router",
        }
    }

    pub fn base_port(self) -> u16 {
        match self {
            Self::Auth => 50051,
            Self::User => 50052,
            Self::Quota => 50053,
            Self::Orders => 50054,
            Self::Articles => 50055,
            Self::Analytics => 50056,
            Self::IdentityGateway => 8081,
            Self::BusinessGateway => 8082,
            Self::Router => 8080,
        }
    }
}

/// Adjusts one component's config before it starts.
pub type Configure<C> = Arc<dyn Fn(&mut C) + Send + Sync>;

/// What to start and how.
#[derive(Clone)]
pub struct MeshOptions {
    /// Where every component keeps state: `redis://…`, or `memory://<name>` to share one
    /// in-process store.
    pub store: StoreConfig,
    /// Replicas of each service and each gateway.
    pub replicas: u16,
    pub host: IpAddr,
    /// Documented ports (base + 100 per replica) when true; free ports (port 0) when false.
    pub fixed_ports: bool,
    /// Start the two gateway pools and the router in front of the services.
    pub with_edge: bool,
    pub configure_auth: Configure<auth_service::Config>,
    pub configure_quota: Configure<quota_service::Config>,
    pub configure_analytics: Configure<analytics_service::Config>,
    pub configure_gateway: Configure<gateway::Config>,
    pub configure_router: Configure<gateway_router::Config>,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            store: StoreConfig { redis_url: Some("memory://meshctl".into()), ..StoreConfig::default() },
            replicas: 2,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            fixed_ports: true,
            with_edge: true,
            configure_auth: Arc::new(|_| {}),
            configure_quota: Arc::new(|_| {}),
            configure_analytics: Arc::new(|_| {}),
            configure_gateway: Arc::new(|_| {}),
            configure_router: Arc::new(|_| {}),
        }
    }
}

/// How a component is started: its `serve` with its configuration, again and again.
type StartFn =
    dyn Fn(TcpListener, Shutdown) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>> + Send + Sync;

/// Starts a component; kept so a stopped component can be started again ([`Mesh::restart`]).
#[derive(Clone)]
struct Starter(Arc<StartFn>);

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Starter")
    }
}

/// One running component.
#[derive(Debug)]
pub struct Component {
    pub kind: Kind,
    /// 1-based.
    pub replica: u16,
    pub addr: SocketAddr,
    drain: Drain,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    starter: Starter,
}

impl Component {
    pub fn name(&self) -> String {
        format!("{}-{}", self.kind.name(), self.replica)
    }

    /// Drains the component and waits (at most 15 s) for it to end.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.drain.trigger();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .with_context(|| format!("{} did not drain within 15s", self.name()))???;
        }
        Ok(())
    }

    /// Aborts the component's serving task at once, without a drain: it stops accepting, but
    /// connections already open are served by their own tasks and may go on. To simulate a
    /// crash that drops connections, run the component as a real process
    /// (`mesh_tests::process::ServiceProcess`) and SIGKILL it.
    pub fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole mesh, running.
#[derive(Debug)]
pub struct Mesh {
    pub components: Vec<Component>,
    /// The router's admin listener (`/metrics`, `/mesh/status`), when the edge runs.
    pub router_admin: Option<SocketAddr>,
}

/// Listeners bound up front, so every component knows every address before any starts.
struct Bound {
    listeners: BTreeMap<(Kind, u16), TcpListener>,
    addrs: BTreeMap<(Kind, u16), SocketAddr>,
}

impl Bound {
    fn endpoints(&self, kind: Kind) -> Vec<String> {
        self.addrs.iter().filter(|((k, _), _)| *k == kind).map(|(_, addr)| format!("http://{addr}")).collect()
    }

    fn instances(&self, kind: Kind) -> Vec<String> {
        self.addrs.iter().filter(|((k, _), _)| *k == kind).map(|(_, addr)| addr.to_string()).collect()
    }
}

impl Mesh {
    /// Binds every listener, then starts every component.
    pub async fn start(opts: MeshOptions) -> anyhow::Result<Self> {
        let mut kinds = Kind::SERVICES.to_vec();
        if opts.with_edge {
            kinds.extend([Kind::IdentityGateway, Kind::BusinessGateway, Kind::Router]);
        }
        let mut bound = Bound { listeners: BTreeMap::new(), addrs: BTreeMap::new() };
        for kind in kinds {
            let replicas = if kind == Kind::Router { 1 } else { opts.replicas };
            for replica in 1..=replicas {
                let port =
                    if opts.fixed_ports { kind.base_port() + (replica - 1) * REPLICA_PORT_STEP } else { 0 };
                let addr = SocketAddr::new(opts.host, port);
                let listener = mesh_core::process::bind(addr).with_context(|| {
                    format!("{}-{replica}: cannot listen on {addr} (is another mesh running?)", kind.name())
                })?;
                bound.addrs.insert((kind, replica), listener.local_addr()?);
                bound.listeners.insert((kind, replica), listener);
            }
        }

        let mut mesh = Mesh { components: Vec::new(), router_admin: None };
        let keys: Vec<(Kind, u16)> = bound.listeners.keys().copied().collect();
        for (kind, replica) in keys {
            let listener = bound.listeners.remove(&(kind, replica)).expect("bound above");
            let store = opts.store.clone();
            match kind {
                Kind::Auth => {
                    let mut cfg = auth_service::Config { store, ..Default::default() };
                    (opts.configure_auth)(&mut cfg);
                    mesh.spawn(kind, replica, listener, move |l, s| auth_service::serve(cfg.clone(), l, s))?;
                }
                Kind::User => {
                    let cfg = user_service::Config { store, ..Default::default() };
                    mesh.spawn(kind, replica, listener, move |l, s| user_service::serve(cfg.clone(), l, s))?;
                }
                Kind::Quota => {
                    let mut cfg = quota_service::Config { store, ..Default::default() };
                    (opts.configure_quota)(&mut cfg);
                    mesh.spawn(kind, replica, listener, move |l, s| quota_service::serve(cfg.clone(), l, s))?;
                }
                Kind::Articles => {
                    let cfg = articles_service::Config { store, ..Default::default() };
                    mesh.spawn(kind, replica, listener, move |l, s| {
                        articles_service::serve(cfg.clone(), l, s)
                    })?;
                }
                Kind::Orders => {
                    let articles = ClientConfig::to(bound.endpoints(Kind::Articles));
                    let cfg = orders_service::Config { store, articles, ..Default::default() };
                    mesh.spawn(kind, replica, listener, move |l, s| {
                        orders_service::serve(cfg.clone(), l, s)
                    })?;
                }
                Kind::Analytics => {
                    let mut cfg = analytics_service::Config { store, ..Default::default() };
                    (opts.configure_analytics)(&mut cfg);
                    mesh.spawn(kind, replica, listener, move |l, s| {
                        analytics_service::serve(cfg.clone(), l, s)
                    })?;
                }
                Kind::IdentityGateway | Kind::BusinessGateway => {
                    let domain = if kind == Kind::IdentityGateway {
                        gateway::Domain::Identity
                    } else {
                        gateway::Domain::Business
                    };
                    let mut cfg = gateway::Config::for_domain(domain);
                    cfg.store = store;
                    cfg.instance = Some(format!("{}-{replica}", kind.name()));
                    let services = &mut cfg.services;
                    services.auth = ClientConfig::to(bound.endpoints(Kind::Auth));
                    services.user = ClientConfig::to(bound.endpoints(Kind::User));
                    services.quota = ClientConfig::to(bound.endpoints(Kind::Quota));
                    services.orders = ClientConfig::to(bound.endpoints(Kind::Orders));
                    services.articles = ClientConfig::to(bound.endpoints(Kind::Articles));
                    services.analytics = ClientConfig::to(bound.endpoints(Kind::Analytics));
                    (opts.configure_gateway)(&mut cfg);
                    mesh.spawn(kind, replica, listener, move |l, s| gateway::serve(cfg.clone(), l, s))?;
                }
                Kind::Router => {
                    let mut cfg = gateway_router::Config::default();
                    let pools = [("identity", Kind::IdentityGateway), ("business", Kind::BusinessGateway)];
                    for (pool, kind) in pools {
                        cfg.pools
                            .insert(pool.into(), gateway_router::config::Pool::of(bound.instances(kind)));
                    }
                    let admin_port = if opts.fixed_ports { cfg.admin_listen.port() } else { 0 };
                    cfg.admin_listen = SocketAddr::new(opts.host, admin_port);
                    (opts.configure_router)(&mut cfg);
                    // Bound once and shared by every start, so a restarted router keeps its
                    // admin address (`/metrics`, `/mesh/status`).
                    let admin = std::net::TcpListener::bind(cfg.admin_listen)
                        .with_context(|| format!("router: cannot listen on {} (admin)", cfg.admin_listen))?;
                    admin.set_nonblocking(true)?;
                    mesh.router_admin = Some(admin.local_addr()?);
                    mesh.spawn(kind, replica, listener, move |l, s| {
                        let cfg = cfg.clone();
                        let admin = admin.try_clone().and_then(TcpListener::from_std);
                        async move { gateway_router::serve_with_admin(cfg, l, Some(admin?), s).await }
                    })?;
                }
            }
        }
        Ok(mesh)
    }

    fn spawn<F, Fut>(
        &mut self,
        kind: Kind,
        replica: u16,
        listener: TcpListener,
        serve: F,
    ) -> anyhow::Result<()>
    where
        F: Fn(TcpListener, Shutdown) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let starter = Starter(Arc::new(move |listener, shutdown| Box::pin(serve(listener, shutdown))));
        let drain = Drain::new();
        let task = tokio::spawn((starter.0)(listener, Box::pin(drain.signaled())));
        self.components.push(Component { kind, replica, addr, drain, task: Some(task), starter });
        Ok(())
    }

    /// Starts the stopped (or killed) component `kind` replica `replica` again, on the address
    /// it had and with the configuration it had, as a restarted process would be. Its peers
    /// find it again on their own (health watches, router probes).
    pub async fn restart(&mut self, kind: Kind, replica: u16) -> anyhow::Result<()> {
        let component = self.get_mut(kind, replica);
        anyhow::ensure!(!component.is_running(), "{} is still running", component.name());
        let listener = mesh_core::process::bind(component.addr)
            .with_context(|| format!("{}: cannot listen on {} again", component.name(), component.addr))?;
        component.drain = Drain::new();
        let shutdown = Box::pin(component.drain.signaled());
        component.task = Some(tokio::spawn((component.starter.0)(listener, shutdown)));
        Ok(())
    }

    /// The component `kind` replica `replica` (1-based).
    pub fn get(&self, kind: Kind, replica: u16) -> &Component {
        self.components.iter().find(|c| c.kind == kind && c.replica == replica).expect("no such component")
    }

    pub fn get_mut(&mut self, kind: Kind, replica: u16) -> &mut Component {
        self.components
            .iter_mut()
            .find(|c| c.kind == kind && c.replica == replica)
            .expect("no such component")
    }

    /// The address of `kind` replica 1.
    pub fn addr(&self, kind: Kind) -> SocketAddr {
        self.get(kind, 1).addr
    }

    /// Waits (at most `timeout`) until every gRPC service answers `grpc.health.v1` SERVING and
    /// every HTTP component answers `/readyz`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        for component in &self.components {
            while !is_ready(component).await {
                anyhow::ensure!(
                    tokio::time::Instant::now() < deadline,
                    "{} did not become ready on {} within {timeout:?}",
                    component.name(),
                    component.addr
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        Ok(())
    }

    /// Drains every component, the edge first, and waits for them (at most 15 s each).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.components.sort_by_key(|c| std::cmp::Reverse(c.kind));
        let mut first_error = None;
        for component in &mut self.components {
            if let Err(e) = component.stop().await {
                tracing::warn!(component = %component.name(), error = %e, "did not stop cleanly");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn is_ready(component: &Component) -> bool {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    match component.kind {
        Kind::IdentityGateway | Kind::BusinessGateway | Kind::Router => {
            http_ok(component.addr, "/readyz").await
        }
        _ => {
            let Ok(endpoint) = tonic::transport::Endpoint::from_shared(format!("http://{}", component.addr))
            else {
                return false;
            };
            match endpoint.connect_timeout(Duration::from_millis(500)).connect().await {
                Ok(channel) => HealthClient::new(channel)
                    .check(HealthCheckRequest { service: String::new() })
                    .await
                    .is_ok_and(|r| r.into_inner().status == 1),
                Err(_) => false,
            }
        }
    }
}

/// A minimal HTTP/1.1 GET that reports whether the answer was 200.
async fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt).await.ok().flatten().unwrap_or(false)
}
