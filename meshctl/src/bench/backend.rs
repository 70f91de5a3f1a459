//! The trivial backend behind nginx and the router in the hop scenario
//! (`meshctl bench backend --listen ADDR`, hidden).
//!
//! It does as little as an HTTP server can, so the hop scenario measures the proxy in front of
//! it and not the backend. It runs in a process of its own, so it never shares a runtime with
//! the load generator.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::routing::get;

/// The body of `GET /`.
pub(crate) const HELLO: &str = "hello from the bench backend\n";

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { HELLO }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Serves until killed.
pub(crate) async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    anyhow::ensure!(listen.ip().is_loopback(), "the bench backend listens on loopback only, not {listen}");
    let listener =
        mesh_core::process::bind(listen).with_context(|| format!("backend: cannot listen on {listen}"))?;
    axum::serve(listener, app()).await?;
    Ok(())
}
