//! Bounds on long-lived response streams (server-sent events): how many are open per principal
//! and in all, and how much each may hold for a client that does not read.
//!
//! A stream takes a [`StreamSlot`] before it calls upstream and gives it back when its pump ends,
//! whatever the reason: client gone, upstream ended, or the client stopped reading for longer
//! than [`StreamConfig::stall_timeout`] with [`StreamConfig::buffer`] events waiting. So open
//! upstream streams are bounded by the caps, and memory per stream by the buffer.
//!
//! The per-principal cap holds across gateways: besides its local count, a slot holds one of the
//! principal's `per_principal` leases in the store (`streams:{principal}:{n}`, taken with
//! `set_nx`, renewed every third of `lease_ttl`, freed by compare-and-delete), so a user cannot
//! open `per_principal` streams on each replica. A gateway that dies leaves its leases to
//! expire within `lease_ttl`. A store error lets the stream open (the tier fails open); the
//! local count still applies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use mesh_core::store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ApiError;

/// Limits of server-sent event streams.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Streams one principal may hold open at once, across every gateway sharing the store;
    /// past it 429. Default: 4.
    pub per_principal: usize,
    /// How long a stream's lease in the store outlives a gateway that stopped renewing it (a
    /// crashed one). Default: 30s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub lease_ttl: Duration,
    /// Streams this gateway holds open at once; past it 503. Default: 1000.
    pub global: usize,
    /// Events buffered for a client that is not reading. Default: 64.
    pub buffer: usize,
    /// How long a full buffer may wait for the client before the stream is dropped. Default: 10s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub stall_timeout: Duration,
    /// Interval of keep-alive comments on an idle stream. Default: 15s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub keep_alive: Duration,
    /// Longest a stream stays open; then it ends cleanly and the client reconnects with
    /// `Last-Event-ID` (EventSource does so by itself), so no connection is held for ever and
    /// a client's slot turns over. Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub max_duration: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            per_principal: 4,
            lease_ttl: Duration::from_secs(30),
            global: 1000,
            buffer: 64,
            stall_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
            max_duration: Duration::from_secs(3600),
        }
    }
}

/// Open streams, in all and per principal.
#[derive(Debug)]
pub struct StreamSlots {
    per_principal: usize,
    lease_ttl: Duration,
    store: Store,
    global: usize,
    open: Mutex<Open>,
    /// True once the gateway drains: open streams end then, new ones are refused. Streams never
    /// end by themselves, so without this a drain would wait for its timeout.
    closing: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_principal: HashMap<String, usize>,
}

/// One open stream; dropping it frees the slot.
#[derive(Debug)]
pub struct StreamSlot {
    slots: Arc<StreamSlots>,
    principal: String,
    _lease: Option<Lease>,
}

/// One of a principal's leases in the store, renewed while the stream lives.
#[derive(Debug)]
struct Lease {
    store: Store,
    key: String,
    id: String,
    renew: JoinHandle<()>,
}

// === impl StreamSlots ===

impl StreamSlots {
    pub fn new(cfg: &StreamConfig, store: Store) -> Self {
        Self {
            per_principal: cfg.per_principal.max(1),
            lease_ttl: cfg.lease_ttl.max(Duration::from_secs(1)),
            store,
            global: cfg.global.max(1),
            open: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every open stream and refuses new ones: the gateway is draining.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// A slot for `principal`, or the problem to answer: 429 past the principal's cap (here or
    /// across gateways), 503 past the gateway's.
    pub async fn acquire(self: &Arc<Self>, principal: &str) -> Result<StreamSlot, ApiError> {
        if *self.closing.borrow() {
            return Err(ApiError::unavailable("this gateway is shutting down, retry shortly"));
        }
        let mut slot = self.acquire_local(principal)?;
        slot._lease = self.lease(principal).await?;
        Ok(slot)
    }

    fn too_many(&self) -> ApiError {
        metrics::counter!("gateway_streams_refused_total", "reason" => "principal").increment(1);
        let detail = format!("at most {} open streams per user; close one first", self.per_principal);
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too-many-streams", "Too many streams", detail)
            .with_retry_after(5)
    }

    fn acquire_local(self: &Arc<Self>, principal: &str) -> Result<StreamSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.global {
            metrics::counter!("gateway_streams_refused_total", "reason" => "global").increment(1);
            return Err(ApiError::unavailable("too many open streams on this gateway, retry shortly")
                .with_retry_after(5));
        }
        let mine = open.by_principal.entry(principal.to_owned()).or_default();
        if *mine >= self.per_principal {
            drop(open);
            return Err(self.too_many());
        }
        *mine += 1;
        open.total += 1;
        metrics::gauge!("gateway_streams_active").increment(1.0);
        metrics::counter!("gateway_streams_total").increment(1);
        Ok(StreamSlot { slots: self.clone(), principal: principal.to_owned(), _lease: None })
    }

    /// One of the principal's leases in the store; `None` when the store cannot answer (fail
    /// open), 429 when every lease is held (by any gateway).
    async fn lease(&self, principal: &str) -> Result<Option<Lease>, ApiError> {
        let id = mesh_core::ids::new_id();
        for n in 0..self.per_principal {
            let key = format!("streams:{principal}:{n}");
            let tier = self.store.fail_open("stream-leases");
            match tier.run("lease", self.store.set_nx(&key, &id, Some(self.lease_ttl))).await {
                Some(true) => {
                    let renew =
                        tokio::spawn(renew(self.store.clone(), key.clone(), id.clone(), self.lease_ttl));
                    return Ok(Some(Lease { store: self.store.clone(), key, id, renew }));
                }
                Some(false) => continue,
                // The store cannot say: count this gateway's streams only (fail open).
                None => return Ok(None),
            }
        }
        Err(self.too_many())
    }
}

/// Keeps a lease alive: every third of its time to live, and only while it is still ours (a
/// lease that expired during a stall and was taken by another stream stays that stream's).
async fn renew(store: Store, key: String, id: String, ttl: Duration) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_if_eq(&key, &id, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(%key, "stream lease lost; the stream goes on counted on this gateway only");
                return;
            }
            Err(e) => tracing::debug!(error = %e, %key, "stream lease not renewed"),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        let (store, key, id) =
            (self.store.clone(), std::mem::take(&mut self.key), std::mem::take(&mut self.id));
        // Only our own lease: one that expired and was taken meanwhile stays with its holder.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = store.delete_if_eq(&key, &id).await;
            });
        }
    }
}

// === impl StreamSlot ===

impl StreamSlot {
    /// Resolves when the gateway starts draining.
    pub async fn closing(&self) {
        let mut closing = self.slots.closing.subscribe();
        // An error means the slots are gone, which cannot happen while this slot holds them.
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_principal.get_mut(&self.principal) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.by_principal.remove(&self.principal);
            }
        }
        metrics::gauge!("gateway_streams_active").decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn caps_apply_per_principal_and_in_all_and_slots_come_back() {
        let cfg = StreamConfig { per_principal: 2, global: 3, ..StreamConfig::default() };
        let slots = Arc::new(StreamSlots::new(&cfg, Store::memory()));
        let a1 = slots.acquire("a").await.unwrap();
        let _a2 = slots.acquire("a").await.unwrap();
        assert_eq!(slots.acquire("a").await.unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        let _b1 = slots.acquire("b").await.unwrap();
        assert_eq!(slots.acquire("c").await.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        let c1 = slots.acquire("c").await.unwrap();
        assert!(slots.acquire("a").await.is_err(), "the gateway is full again");
        slots.close_all();
        drop(c1);
        assert_eq!(slots.acquire("d").await.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE, "draining");
    }

    #[tokio::test]
    async fn the_per_principal_cap_holds_across_gateways_sharing_a_store() {
        let store = Store::memory();
        let cfg = StreamConfig { per_principal: 2, ..StreamConfig::default() };
        let (one, two) =
            (Arc::new(StreamSlots::new(&cfg, store.clone())), Arc::new(StreamSlots::new(&cfg, store)));
        let on_one = one.acquire("a").await.unwrap();
        let _on_two = two.acquire("a").await.unwrap();
        assert_eq!(two.acquire("a").await.unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(one.acquire("a").await.unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        assert!(one.acquire("b").await.is_ok(), "another user is not affected");
        drop(on_one);
        // The lease is given back by a spawned compare-and-delete.
        let freed = mesh_tests::wait_until(Duration::from_secs(2), || {
            let two = two.clone();
            async move { two.acquire("a").await.is_ok() }
        })
        .await;
        assert!(freed, "a closed stream's lease is free again on the other gateway");
    }
}
