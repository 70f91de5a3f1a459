//! Keeping pools current: instance names resolved again every `dns_refresh` (a headless
//! Service yields one address per ready pod), and every instance's `/readyz` probed every
//! `health.interval`. A probe that times out takes an instance out only if the instance answered
//! nothing since the previous probe: a gateway at capacity answers its probe late while it keeps
//! answering requests, and taking every such gateway out turned an overload into "no healthy
//! instance" for the whole pool (1,000 connections in `meshctl bench`). A hung or dead gateway
//! answers nothing, and a refused connection or a non-200 answer takes it out at once, as before.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};

use crate::config::Config;
use crate::pool::Pool;

/// Resolves `names` (`host:port`) to addresses; IPv4 preferred when a name has both.
pub async fn resolve(names: &[String]) -> Vec<(SocketAddr, String)> {
    let mut found = Vec::new();
    for name in names {
        match tokio::net::lookup_host(name.as_str()).await {
            Ok(addrs) => {
                let mut addrs: Vec<SocketAddr> = addrs.collect();
                if addrs.iter().any(|a| a.is_ipv4()) {
                    addrs.retain(|a| a.is_ipv4());
                }
                addrs.sort();
                addrs.dedup();
                found.extend(addrs.into_iter().map(|a| (a, name.clone())));
            }
            Err(e) => tracing::warn!(instance = %name, error = %e, "cannot resolve instance"),
        }
    }
    found
}

/// Runs discovery and probing for `pool` until `stop` resolves.
pub async fn maintain(pool: Arc<Pool>, names: Vec<String>, cfg: Arc<Config>, stop: impl Future<Output = ()>) {
    let discovery = async {
        loop {
            let addrs = resolve(&names).await;
            // Keep the last known set when resolution fails outright, rather than emptying the pool.
            if !addrs.is_empty() {
                pool.set_addresses(addrs);
            }
            tokio::time::sleep(cfg.dns_refresh).await;
        }
    };
    let probing = async {
        let mut tick = tokio::time::interval(cfg.health.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let instances = pool.instances();
            let probes = instances.iter().map(|instance| {
                let pool = pool.clone();
                let timeout = cfg.health.timeout;
                async move {
                    let busy = instance.answered_since_last_probe();
                    let ready = match probe(&pool, instance.addr, timeout).await {
                        Probe::Ready => true,
                        Probe::NotReady => false,
                        Probe::TimedOut => busy,
                    };
                    instance.probed(ready, &pool.name, &pool.health);
                }
            });
            futures_util::future::join_all(probes).await;
        }
    };
    tokio::select! {
        () = discovery => {}
        () = probing => {}
        () = stop => {}
    }
}

/// What one probe saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Probe {
    /// 200 within the timeout.
    Ready,
    /// Another status, or no connection.
    NotReady,
    /// No answer within the timeout.
    TimedOut,
}

/// `GET /readyz` on `addr`: ready when it answers 200 within `timeout`.
async fn probe(pool: &Pool, addr: SocketAddr, timeout: Duration) -> Probe {
    let Ok(request) = Request::get(format!("http://{addr}/readyz")).body(Body::empty()) else {
        return Probe::NotReady;
    };
    match tokio::time::timeout(timeout, pool.client.request(request)).await {
        Ok(Ok(response)) if response.status() == StatusCode::OK => Probe::Ready,
        Ok(_) => Probe::NotReady,
        Err(_) => Probe::TimedOut,
    }
}
