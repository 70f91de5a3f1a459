//! The two HTTP gateways of the mesh: identity and business.
//!
//! One library, two binaries. The domains differ in their routes and their fallback policy
//! (docs/ARCHITECTURE.md §5); authentication, metering, edge protection, errors and gRPC clients are
//! shared.
//!
//! # Layout
//! - [`config`]: settings and the [`Domain`] a gateway serves.
//! - [`context`]: request id, problem rendering, mesh headers, metrics (outermost middleware).
//! - [`edge`]: the tower/tower-http protection stack.
//! - [`error`]: [`ApiError`](error::ApiError), problem+json, and the gRPC → HTTP status table.
//! - [`fallback`]: last-known-good answers, the response cache of public reads, and the marks
//!   on fallback responses; a store tier that fails open.
//! - [`lockouts`]: login lockouts seen, refused without a store trip.
//! - [`json`]: body and query extractors that answer problems naming the bad field.
//! - [`authn`]: JWT (local, JWKS) and API key authentication; the `authenticate` step.
//! - [`quota`]: metering (the `meter` step, after `authenticate`), `RateLimit-*` headers, and
//!   the local limit kept while the quota service is down.
//! - [`clients`]: one typed handle per service (request metadata, deadline cut, errors through
//!   the one table), dialled only for the gateway's domain; the transport seam tests use.
//! - [`streams`]: caps and buffer bounds of server-sent event streams.
//! - [`identity`], [`business`]: each domain's routes.
//! - [`openapi`]: the `/openapi.json` document.

pub mod authn;
pub mod business;
pub mod clients;
pub mod config;
pub mod context;
pub mod edge;
pub mod error;
pub mod fallback;
pub mod identity;
pub mod json;
pub mod lockouts;
pub mod openapi;
pub mod page;
pub mod quota;
pub mod state;
pub mod streams;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderValue;
use axum::response::IntoResponse;
use mesh_core::admin::{self, Readiness};
use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use mesh_core::store::Store;
use tokio::net::TcpListener;

pub use config::{BusinessConfig, Config, Domain};
pub use state::AppState;

use crate::authn::{ApiKeyVerifier, Authenticator, JwksVerifier};
use crate::clients::Clients;
use crate::context::Instance;
use crate::error::ApiError;

/// Connects what a gateway needs: the store, and channels to the services of its domain.
pub async fn state(cfg: Config) -> anyhow::Result<AppState> {
    let clients = Clients::dial(cfg.domain, &cfg.services)?;
    state_with(cfg, clients).await
}

/// A gateway's state over the given service handles: the seam through which tests call
/// in-process, failing, hung or slow services ([`Clients::with`]).
pub async fn state_with(cfg: Config, clients: Clients) -> anyhow::Result<AppState> {
    let store = Store::connect(&cfg.store).await?;
    let lkg = fallback::LastKnownGood::new(store.clone(), cfg.fallback_ttl)
        .with_timeout(cfg.cache_timeout)
        .with_refresh(cfg.fallback_refresh);
    let jwks = Arc::new(JwksVerifier::new(clients.auth.clone(), &cfg.jwt, lkg.clone()));
    let api_keys = ApiKeyVerifier::new(lkg.clone(), cfg.api_key_cache_ttl);
    let authn = Authenticator::new(jwks, api_keys, clients.auth.clone());
    let local_quota = Arc::new(quota::LocalQuota::new(cfg.local_quota.clone()));
    let leases = Arc::new(quota::Leases::new(clients.quota.clone(), cfg.quota_leases.clone()));
    let meter = quota::Meter::new(leases, local_quota, lkg.clone());
    let streams = Arc::new(streams::StreamSlots::new(&cfg.streams, store.clone()));
    let Clients { auth, users, quota, orders, articles, analytics, channels } = clients;
    Ok(AppState::new(state::Shared {
        cfg: Arc::new(cfg),
        auth,
        users,
        quota,
        orders,
        articles,
        analytics,
        channels,
        authn,
        meter,
        store,
        lkg,
        streams,
        seen_locks: Arc::default(),
    }))
}

/// The gateway's routes for its domain, inside the edge stack; the admin routes sit beside
/// them, outside load shedding, so probes answer even at capacity.
pub fn app(state: AppState, instance: &str, readiness: Readiness) -> Router {
    let instance_name = instance;
    let domain = state.cfg.domain;
    let routes = match domain {
        Domain::Identity => identity::routes(&state),
        Domain::Business => business::routes(&state),
    };
    // Serialised once: the handler would otherwise clone and encode the whole document per call.
    let document =
        axum::body::Bytes::from(serde_json::to_vec(&openapi::document(domain)).unwrap_or_default());
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    let routes =
        routes.route("/openapi.json", axum::routing::get(move || async move { (json, document) })).fallback(
            || async { ApiError::not_found("no route matches this path on this gateway").into_response() },
        );
    let fallbacks = Arc::new(fallback::FallbackCounts::default());
    let observe: context::Observer = {
        let fallbacks = fallbacks.clone();
        // Every answer marked `x-mesh-fallback` is counted and logged once, with its route.
        Arc::new(move |headers: &axum::http::HeaderMap, route: &str| {
            fallback::observe(headers, route);
            fallbacks.count(headers);
        })
    };
    let instance = Instance {
        name: HeaderValue::from_str(instance).unwrap_or(HeaderValue::from_static("gateway")),
        request_timeout: state.cfg.limits.request_timeout,
        observe,
    };
    let protected =
        edge::protect(routes.with_state(state.clone()), &state.cfg.limits, &state.cfg.cors, instance);
    // The gateway's view of its services, for the router's status page (outside the edge
    // stack, like the probes).
    let view = {
        let (channels, name, domain) = (state.channels.clone(), instance_name.to_owned(), domain.as_str());
        axum::routing::get(move || async move {
            axum::Json(serde_json::json!({
                "instance": name,
                "domain": domain,
                "services": channels.view(),
                "fallbacks": fallbacks.view(),
            }))
        })
    };
    admin::router(readiness).merge(protected).route("/mesh/services", view)
}

/// Serves one gateway on `listener` until `shutdown`, then drains (at most 10 s).
pub async fn serve(cfg: Config, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
    let bound: SocketAddr = listener.local_addr()?;
    let instance = cfg.instance_name(bound);
    let jwks_refresh = cfg.jwt.jwks_refresh;
    let state = state(cfg).await?;
    let drain = Drain::new();
    tokio::spawn({
        let (drain, streams) = (drain.clone(), state.streams.clone());
        async move {
            shutdown.await;
            drain.trigger();
            // Event streams never finish on their own: end them so the drain does not wait.
            streams.close_all();
        }
    });
    state.authn.jwks.clone().spawn_refresher(jwks_refresh, drain.signaled());
    state.meter.leases().clone().spawn_releaser(drain.signaled());
    let readiness = Readiness::new(drain.clone());
    // The store is watched, not required: the gateway serves while Redis is down.
    readiness.watch_store(state.store.clone());
    readiness.set_started();
    tracing::info!(addr = %bound, domain = state.cfg.domain.as_str(), %instance, "gateway serving");
    let app = app(state, &instance, readiness)
        .layer(mesh_core::fault_inject::FaultLayer(mesh_core::fault_inject::Protocol::Http));
    // The peer address reaches handlers (ConnectInfo): the throttles key on the client's.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app).with_graceful_shutdown(drain.signaled());
    let overdue = async {
        drain.signaled().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    };
    tokio::select! {
        result = server => result?,
        () = overdue => tracing::warn!("connections still open 10s after shutdown; closing them"),
    }
    Ok(())
}

/// The sources a gateway binary reads its config from (lists declared).
pub fn config_sources() -> mesh_core::config::Sources {
    config::LIST_KEYS.iter().fold(mesh_core::config::Sources::from_process(), |s, k| s.with_list_key(*k))
}
