//! Support for the mesh's tests: real parts, started hermetically.
//!
//! # Layout
//! - [`RedisServer`]: a real `redis-server` on a free loopback port, which a test can stop and
//!   start again (for fault tests) and which dies with the test.
//! - [`Component`]: a mesh component served on a port-0 listener in this process, stoppable.
//! - [`process`]: a component's real binary as a child process, to signal or kill.
//! - [`load`]: a bounded load generator for chaos tests (loopback only).
//! - [`lifecycle`]: the health/admin/SIGTERM checks every service binary must pass.
//! - [`wait_until`]: bounded polling for a condition, in place of sleeps.

pub mod command;
mod component;
pub mod lifecycle;
pub mod load;
pub mod process;
mod redis_server;

pub use component::{Component, grpc_channel};
pub use redis_server::RedisServer;

use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it returns true or `timeout` passes; returns whether it did.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A key prefix no other test uses, so tests can share a store without seeing each other.
pub fn unique_prefix(name: &str) -> String {
    format!("test:{name}:{}:", mesh_core::ids::new_id())
}
