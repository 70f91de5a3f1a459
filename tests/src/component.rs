//! A component (any `serve(cfg, listener, shutdown)`) running in this process on a port-0 listener.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use mesh_core::process::Shutdown;
use mesh_core::shutdown::Drain;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

/// A running component. Dropping it aborts the task; [`Component::stop`] drains it instead.
#[derive(Debug)]
pub struct Component {
    pub addr: SocketAddr,
    drain: Drain,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Component {
    /// Binds `127.0.0.1:0` and runs `serve` on it.
    pub async fn start<F, Fut>(serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let drain = Drain::new();
        let task = tokio::spawn(serve(listener, Box::pin(drain.signaled())));
        Ok(Self { addr, drain, task: Some(task) })
    }

    /// `http://<addr>`.
    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drains the component and waits (at most 10 s) for it to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.drain.trigger();
        let task = self.task.take().context("already stopped")?;
        tokio::time::timeout(Duration::from_secs(10), task).await.context("did not drain within 10s")??
    }

    /// Aborts the component's task at once, with no drain. This stops accepting new connections;
    /// connections already open may keep being served, because tonic serves each one on a task of
    /// its own that the abort does not reach. To simulate a crash, run the real binary as a
    /// process ([`crate::process::ServiceProcess`]) and kill it.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A connected channel to `addr`, retrying the connect for up to 5 s while the server comes up.
pub async fn grpc_channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10));
    let mut last = None;
    for _ in 0..100 {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.map(anyhow::Error::from).unwrap_or_else(|| anyhow::anyhow!("no connect attempt")))
}
