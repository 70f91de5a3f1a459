//! The front router: the one door every client uses.
//!
//! Each request is classified by an ordered rule table to a pool of gateway instances, and
//! forwarded to one chosen by power of two choices over least in-flight. Instances are probed
//! (`/readyz`) and ejected passively on failures; a request that failed before any response
//! byte, or got 502/503, is retried on another instance when that is safe, within a retry
//! budget. Each pool has its own connections and concurrency limit, so one domain's outage
//! never touches the other's requests.
//!
//! # Layout
//! - [`config`]: rule table, pools, limits, health and retry settings.
//! - [`classify`]: the pure classification function.
//! - [`pool`]: instances, their eligibility and the balancer.
//! - [`discovery`]: DNS re-resolution and active probing of pool instances.
//! - [`proxy`]: the forwarding hop with failover.
//! - [`framing`]: refusing requests with both Content-Length and Transfer-Encoding.
//! - [`headers`]: hop-by-hop, forwarding, request id and trace context headers.
//! - [`ratelimit`]: per-client rate limit.
//! - [`status`]: `/mesh/status` and the merged `/openapi.json`.
//! - [`history`]: each pool's recent answers in a bounded ring, for the status page's charts.
//! - [`docs`]: `/docs`, the API reference page (vendored Swagger UI) over that document, on the
//!   public port.
//! - [`server`]: the HTTP/1.1 + h2c server, its own routes and the admin listener.
//! - [`conn`]: connection caps and the deadlines of one client connection.
//! - [`access_log`]: one JSON line per forwarded request (target `access`), sampled.
//! - [`body`]: the client's request body under its size and time limits.

pub mod access_log;
pub mod body;
pub mod classify;
pub mod config;
pub mod conn;
pub mod discovery;
pub mod docs;
pub mod framing;
pub mod headers;
pub mod history;
pub mod pool;
pub mod proxy;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_core::admin::Readiness;
use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use mesh_core::store::Store;
use tokio::net::TcpListener;

pub use config::Config;

use crate::pool::Pool;
use crate::state::RouterState;

/// Serves the router on `listener` until `shutdown`, then drains (at most 10 s); the admin
/// routes on `cfg.admin_listen`.
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let admin = TcpListener::bind(cfg.admin_listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} (admin): {e}", cfg.admin_listen))?;
    serve_with_admin(cfg, listener, Some(admin), shutdown).await
}

/// [`serve`] with the admin listener bound by the caller (`None`: no admin listener, e.g.
/// when the embedding process serves its own).
pub async fn serve_with_admin(
    cfg: Config,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    cfg.validate()?;
    let cfg = Arc::new(cfg);
    let drain = Drain::new();
    tokio::spawn({
        let drain = drain.clone();
        async move {
            shutdown.await;
            drain.trigger();
        }
    });

    let mut pools = BTreeMap::new();
    for (name, pool_cfg) in &cfg.pools {
        let pool = Arc::new(Pool::new(name, pool_cfg, &cfg));
        pool.set_addresses(discovery::resolve(&pool_cfg.instances).await);
        tokio::spawn(discovery::maintain(
            pool.clone(),
            pool_cfg.instances.clone(),
            cfg.clone(),
            drain.signaled(),
        ));
        pools.insert(name.clone(), pool);
    }
    // Connects on first use: the router starts, and serves, while Redis is down.
    let store = match &cfg.store.redis_url {
        Some(url) if !url.is_empty() => Some(Store::connect(&cfg.store).await?),
        _ => None,
    };
    let store_for_readiness = store.clone();
    let state = Arc::new(RouterState {
        cfg: cfg.clone(),
        pools,
        limiter: ratelimit::Limiter::new(&cfg.limits, store),
        unrouted: pool::Counters::new("none", &cfg.status),
        traced: mesh_core::trace::exporting(),
    });
    tokio::spawn({
        let state = state.clone();
        let stop = drain.signaled();
        async move {
            let housekeeping = async {
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    state.limiter.housekeep();
                }
            };
            tokio::select! {
                () = housekeeping => {}
                () = stop => {}
            }
        }
    });
    let readiness = Readiness::new(drain.clone());
    if let Some(store) = &store_for_readiness {
        readiness.watch_store(store.clone());
    }
    if let Some(admin) = admin {
        tracing::info!(admin = %admin.local_addr()?, "router admin serving");
        tokio::spawn(server::run_admin(admin, state.clone(), readiness.clone(), drain.clone()));
    }
    tracing::info!(addr = %listener.local_addr()?, pools = ?cfg.pools.keys().collect::<Vec<_>>(), "router serving");
    server::run(listener, state, readiness, drain).await
}

/// The sources the router binary reads its config from (lists declared).
pub fn config_sources() -> mesh_core::config::Sources {
    config::LIST_KEYS.iter().fold(mesh_core::config::Sources::from_process(), |s, k| s.with_list_key(*k))
}
