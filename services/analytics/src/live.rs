//! Live events: every recorded event is appended to its owner's capped log in the store, and
//! each watcher polls that log from its own position.
//!
//! The log is a stream trimmed to its last [`LiveConfig::log_len`] entries and
//! [`LiveConfig::log_max_bytes`] bytes, expiring [`LiveConfig::log_ttl`] after its last event, so
//! it stays bounded however many events an owner records (and goes away when they stop), and
//! any replica can serve a watcher of events recorded on any other. Watchers follow it with [`mesh_core::store::follow`]: plain
//! non-blocking range reads (no blocking read: the store's Redis connection is shared by every
//! call of this replica). An entry's id is the
//! event's position: a watcher resumes after the last id it saw (SSE `Last-Event-ID`).
//!
//! A watch is a stream future with no task of its own: when the caller goes away tonic drops it,
//! and dropping it is all the cleanup there is (counted in `analytics_watchers_cancelled_total`).

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use mesh_core::ServiceError;
use mesh_core::store::{FollowOptions, LogBounds, Store, StoreResult, StreamEntry, follow};
use mesh_proto::analytics::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tonic::Status;

use crate::validate::OwnerId;

/// Live events settings.
#[derive(Clone, Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LiveConfig {
    /// Entries kept per owner for watchers to resume from; the oldest go first. Default: 1000.
    pub log_len: usize,
    /// Bytes kept per owner (field names and values of the kept entries), whichever of this
    /// and `log_len` binds first; the oldest go first. With events of at most
    /// `max_properties_bytes` of properties this keeps the last ~60 of the largest events, and
    /// the last 1000 of small ones. Default: 256 KiB (262144).
    pub log_max_bytes: usize,
    /// How long an owner's log lives after its last event: long enough for a watcher to resume
    /// after a reconnect, short enough that idle owners hold nothing. Default: 1h.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub log_ttl: Duration,
    /// How often an idle watcher looks for new events. Default: 20ms.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub poll_interval: Duration,
    /// Entries read per poll. Default: 100.
    pub batch: usize,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            log_len: 1000,
            log_max_bytes: 256 * 1024,
            log_ttl: Duration::from_secs(3600),
            poll_interval: Duration::from_millis(20),
            batch: 100,
        }
    }
}

// === impl LiveConfig ===

impl LiveConfig {
    /// What one owner's log keeps.
    pub fn bounds(&self) -> LogBounds {
        LogBounds { max_len: self.log_len, max_bytes: self.log_max_bytes, ttl: self.log_ttl }
    }
}

/// The store key of an owner's live log.
pub fn log_key(owner: &OwnerId) -> String {
    format!("analytics:live:{owner}")
}

/// Appends a recorded event to its owner's live log; `properties` is their JSON, as validated
/// ([`crate::validate::encoded_properties`]).
pub async fn publish(
    store: &Store,
    cfg: &LiveConfig,
    owner: &OwnerId,
    kind: &str,
    properties: &str,
    event_id: &str,
    recorded_at: i64,
) -> StoreResult<String> {
    let recorded_at = recorded_at.to_string();
    let fields = [
        ("type", kind),
        ("event_id", event_id),
        ("recorded_at", recorded_at.as_str()),
        ("properties", properties),
    ];
    store.log_append(&log_key(owner), &fields, cfg.bounds()).await
}

/// `<ms>-<seq>`, as the store hands out.
pub fn valid_position(id: &str) -> Result<&str, ServiceError> {
    if mesh_core::store::is_entry_id(id) {
        Ok(id)
    } else {
        Err(ServiceError::InvalidArgument("after_id: not an event id".into()))
    }
}

fn event(entry: StreamEntry) -> Event {
    let field = |name: &str| entry.field(name).unwrap_or_default().to_owned();
    Event {
        r#type: field("type"),
        properties: serde_json::from_str(entry.field("properties").unwrap_or("{}")).unwrap_or_default(),
        recorded_at: entry.field("recorded_at").and_then(|t| t.parse().ok()).unwrap_or_default(),
        event_id: field("event_id"),
        id: entry.id,
    }
}

/// One watcher: where it starts in the log, and what it is after.
pub struct Watch {
    store: Store,
    cfg: LiveConfig,
    key: String,
    after: Option<String>,
    kind: Option<String>,
    stop: watch::Receiver<bool>,
    counted: Counted,
}

/// Counts a watcher in `analytics_watchers_active` while it lives, and its end as a cancellation
/// unless it ended on its own (shutdown, store failure).
struct Counted {
    ended: bool,
}

// === impl Watch ===

impl Watch {
    /// A watcher of `owner`'s events after `after`, or from the newest one now when `None`.
    /// Reads the log's position before answering, so nothing recorded after the call is answered
    /// is missed.
    pub async fn start(
        store: Store,
        cfg: LiveConfig,
        owner: &OwnerId,
        kind: Option<String>,
        after: Option<String>,
        stop: watch::Receiver<bool>,
    ) -> Result<Self, ServiceError> {
        let key = log_key(owner);
        let after = match after {
            Some(after) => Some(after),
            None => store.log_last_id(&key).await?,
        };
        metrics::gauge!("analytics_watchers_active").increment(1.0);
        metrics::counter!("analytics_watchers_total").increment(1);
        tracing::debug!(owner_id = %owner, after = ?after, "live events watch started");
        let counted = Counted { ended: false };
        Ok(Self { store, cfg, key, after, kind, stop, counted })
    }

    /// The events, as a stream that ends only on shutdown or a store failure: the owner's log
    /// followed from the watcher's position ([`mesh_core::store::follow`]), filtered by type.
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, Status>> + Send + 'static {
        let Self { store, cfg, key, after, kind, mut stop, counted } = self;
        let opts = FollowOptions { poll_interval: cfg.poll_interval, batch: cfg.batch };
        let stopping = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let entries = Box::pin(follow(store, key, after, opts, stopping));
        futures_util::stream::unfold(Some((entries, counted)), move |state| {
            let kind = kind.clone();
            async move {
                let (mut entries, mut counted) = state?;
                loop {
                    match entries.next().await {
                        Some(Ok(entry)) => {
                            if kind.as_deref().is_none_or(|k| entry.field("type") == Some(k)) {
                                return Some((Ok(event(entry)), Some((entries, counted))));
                            }
                        }
                        None => {
                            tracing::debug!("live events watch stopping: draining");
                            counted.ended = true;
                            return None;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "live events: cannot read the log; ending the watch");
                            counted.ended = true;
                            return Some((Err(Status::unavailable("live events are unavailable")), None));
                        }
                    }
                }
            }
        })
    }
}

// === impl Counted ===

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("analytics_watchers_active").decrement(1.0);
        tracing::debug!(cancelled = !self.ended, "live events watch ended");
        if !self.ended {
            metrics::counter!("analytics_watchers_cancelled_total").increment(1);
        }
    }
}
