//! Bounds on long-lived response streams (server-sent events): how many are open per principal
//! and in all, and how much each may hold for a client that does not read.
//!
//! A stream takes a [`StreamSlot`] before it calls upstream and gives it back when its pump ends,
//! whatever the reason: client gone, upstream ended, or the client stopped reading for longer
//! than [`StreamConfig::stall_timeout`] with [`StreamConfig::buffer`] events waiting. So open
//! upstream streams are bounded by the caps, and memory per stream by the buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::ApiError;

/// Limits of server-sent event streams.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Streams one principal may hold open at once; past it 429. Default: 4.
    pub per_principal: usize,
    /// Streams this gateway holds open at once; past it 503. Default: 1000.
    pub global: usize,
    /// Events buffered for a client that is not reading. Default: 64.
    pub buffer: usize,
    /// How long a full buffer may wait for the client before the stream is dropped. Default: 10s.
    #[serde(with = "humantime_serde")]
    pub stall_timeout: Duration,
    /// Interval of keep-alive comments on an idle stream. Default: 15s.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            per_principal: 4,
            global: 1000,
            buffer: 64,
            stall_timeout: Duration::from_secs(10),
            keep_alive: Duration::from_secs(15),
        }
    }
}

/// Open streams, in all and per principal.
#[derive(Debug)]
pub struct StreamSlots {
    per_principal: usize,
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
}

// === impl StreamSlots ===

impl StreamSlots {
    pub fn new(cfg: &StreamConfig) -> Self {
        Self {
            per_principal: cfg.per_principal.max(1),
            global: cfg.global.max(1),
            open: Mutex::default(),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every open stream and refuses new ones: the gateway is draining.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// A slot for `principal`, or the problem to answer: 429 past the principal's cap, 503 past
    /// the gateway's.
    pub fn acquire(self: &Arc<Self>, principal: &str) -> Result<StreamSlot, ApiError> {
        if *self.closing.borrow() {
            return Err(ApiError::unavailable("this gateway is shutting down, retry shortly"));
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.global {
            metrics::counter!("gateway_streams_refused_total", "reason" => "global").increment(1);
            return Err(ApiError::unavailable("too many open streams on this gateway, retry shortly")
                .with_retry_after(5));
        }
        let mine = open.by_principal.entry(principal.to_owned()).or_default();
        if *mine >= self.per_principal {
            metrics::counter!("gateway_streams_refused_total", "reason" => "principal").increment(1);
            let detail = format!("at most {} open streams per user; close one first", self.per_principal);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-streams",
                "Too many streams",
                detail,
            )
            .with_retry_after(5));
        }
        *mine += 1;
        open.total += 1;
        metrics::gauge!("gateway_streams_active").increment(1.0);
        metrics::counter!("gateway_streams_total").increment(1);
        Ok(StreamSlot { slots: self.clone(), principal: principal.to_owned() })
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

    #[test]
    fn caps_apply_per_principal_and_in_all_and_slots_come_back() {
        let cfg = StreamConfig { per_principal: 2, global: 3, ..StreamConfig::default() };
        let slots = Arc::new(StreamSlots::new(&cfg));
        let a1 = slots.acquire("a").unwrap();
        let _a2 = slots.acquire("a").unwrap();
        assert_eq!(slots.acquire("a").unwrap_err().status, StatusCode::TOO_MANY_REQUESTS);
        let _b1 = slots.acquire("b").unwrap();
        assert_eq!(slots.acquire("c").unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        drop(a1);
        let c1 = slots.acquire("c").unwrap();
        assert!(slots.acquire("a").is_err(), "the gateway is full again");
        slots.close_all();
        drop(c1);
        assert_eq!(slots.acquire("d").unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
}
