//! Graceful shutdown: a process stops accepting, finishes in-flight work, then exits.

use tokio::sync::watch;

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, draining"),
        () = term => tracing::info!("SIGTERM received, draining"),
    }
}

/// A shutdown trigger that many parts of a process (gRPC server, admin server) can wait on.
#[derive(Clone, Debug)]
pub struct Drain {
    tx: watch::Sender<bool>,
}

impl Default for Drain {
    fn default() -> Self {
        Self { tx: watch::Sender::new(false) }
    }
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the drain; every [`Drain::signaled`] future resolves.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Drain::trigger`] has been called (at once if it already was).
    pub fn signaled(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            let _ = rx.wait_for(|draining| *draining).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_wakes_including_late_ones() {
        let drain = Drain::new();
        let early = tokio::spawn(drain.signaled());
        drain.trigger();
        tokio::time::timeout(std::time::Duration::from_secs(1), early).await.unwrap().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(1), drain.signaled()).await.unwrap();
        assert!(drain.is_draining());
    }
}
