//! The shape of every binary's `main`: read the command line ([`crate::cli`]), load config, start
//! telemetry, bind the listeners, serve admin endpoints beside the component, and drain on
//! SIGTERM/SIGINT. `check`, `print-config` and `print-defaults` stop after loading: nothing is
//! bound, no telemetry starts.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::TcpListener;

use crate::admin::{self, Readiness};
use crate::cli::Binary;
use crate::config::{Sources, Validate};
use crate::shutdown::{self, Drain};

/// A future that resolves when the component should drain.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The addresses a process listens on.
pub trait Listens {
    /// The component's main listener (gRPC or HTTP).
    fn listen(&self) -> SocketAddr;
    /// `/healthz`, `/readyz`, `/metrics`.
    fn admin_listen(&self) -> SocketAddr;
    /// The component's store, whose state `/readyz` reports (a detail, not a condition).
    fn store(&self) -> Option<&crate::store::StoreConfig> {
        None
    }
    /// Whether `/fault` is served on the admin listener (the `admin_faults` key).
    fn admin_faults(&self) -> bool {
        false
    }
}

/// Runs one component as a process until SIGTERM/SIGINT, then drains it.
pub async fn run<C, F, Fut>(binary: Binary, serve: F) -> anyhow::Result<()>
where
    C: DeserializeOwned + Serialize + Default + Listens + Validate,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_with(binary, Sources::from_process(), serve).await
}

/// [`run`] with the configuration read from `sources` (e.g. with list keys declared).
pub async fn run_with<C, F, Fut>(binary: Binary, sources: Sources, serve: F) -> anyhow::Result<()>
where
    C: DeserializeOwned + Serialize + Default + Listens + Validate,
    F: FnOnce(C, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_inner(binary, sources, true, |cfg, listener, _admin, shutdown| serve(cfg, listener, shutdown)).await
}

/// [`run_with`] for a component that serves its own admin listener (bound here, on
/// `admin_listen`), with routes of its own beside the probes, like the router's `/mesh/status`.
pub async fn run_with_own_admin<C, F, Fut>(binary: Binary, sources: Sources, serve: F) -> anyhow::Result<()>
where
    C: DeserializeOwned + Serialize + Default + Listens + Validate,
    F: FnOnce(C, TcpListener, TcpListener, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_inner(binary, sources, false, |cfg, listener, admin: Option<TcpListener>, shutdown| {
        serve(cfg, listener, admin.expect("bound for a component serving its own admin"), shutdown)
    })
    .await
}

/// Connections the kernel queues for a listener before the process accepts them. tokio's
/// default (1024) overflows when a burst of more connections arrives faster than a busy process
/// accepts them (an attack opening 1,100 at once on 2 cores did): the kernel then drops SYNs,
/// and an honest client's connect waits a whole retransmission (1 s). The kernel caps it at
/// `net.core.somaxconn` (4096 on these machines).
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `addr` with [`ACCEPT_BACKLOG`].
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(ACCEPT_BACKLOG)
}

async fn run_inner<C, F, Fut>(
    binary: Binary,
    sources: Sources,
    serve_admin: bool,
    serve: F,
) -> anyhow::Result<()>
where
    C: DeserializeOwned + Serialize + Default + Listens + Validate,
    F: FnOnce(C, TcpListener, Option<TcpListener>, Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = crate::cli::parse(binary);
    let sources = cli.config.apply(sources);
    if let Some(command) = cli.command {
        crate::cli::execute_or_exit::<C>(binary.name, command, &sources);
        return Ok(());
    }
    let name = binary.name;
    crate::telemetry::init(name);
    let cfg: C = sources.load()?;
    cfg.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e:#}"))?;
    crate::fault_inject::enable(cfg.admin_faults());
    let listener = bind(cfg.listen()).with_context(|| format!("cannot listen on {}", cfg.listen()))?;
    let admin_listener = TcpListener::bind(cfg.admin_listen())
        .await
        .with_context(|| format!("cannot listen on {} (admin)", cfg.admin_listen()))?;
    // The bound addresses, not the configured ones: with port 0 these say where the process is.
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        "{name} listening"
    );

    let drain = Drain::new();
    let readiness = Readiness::new(drain.clone());
    // A store of its own for the probe (it connects on first use, so this costs nothing while
    // Redis is down): the admin listener says what the component's store is doing.
    if let Some(store) = cfg.store() {
        readiness.watch_store(crate::store::Store::connect(store).await?);
    }
    let own_admin = if serve_admin {
        tokio::spawn(admin::serve(admin_listener, readiness.clone()));
        None
    } else {
        Some(admin_listener)
    };
    tokio::spawn({
        let drain = drain.clone();
        async move {
            shutdown::signal().await;
            drain.trigger();
        }
    });
    // The listener is bound, so connections queue from here on; the component accepts them as
    // soon as it has connected to its store.
    readiness.set_started();
    let result = serve(cfg, listener, own_admin, Box::pin(drain.signaled())).await;
    tracing::info!("{name} stopped");
    result
}
