//! `mesh.analytics.v1.AnalyticsService`.

use std::collections::BTreeMap;

use mesh_core::ServiceError;
use mesh_core::ids::{new_id, unix_now};
use mesh_core::store::Store;
use mesh_proto::analytics::analytics_service_server::AnalyticsService;
use mesh_proto::analytics::{
    Event, GetSummaryRequest, RecordEventRequest, RecordEventResponse, Summary, TypeCount, WatchEventsRequest,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::Config;
use crate::bucket::Granularity;
use crate::live::{self, LiveConfig, Watch};
use crate::validate;
use crate::window::Window;

pub struct AnalyticsApi {
    store: Store,
    live: LiveConfig,
    /// [`crate::Config::max_properties_bytes`].
    max_properties_bytes: usize,
    /// Turns true when the service drains: live watches end then, instead of holding the drain.
    stop: watch::Receiver<bool>,
}

/// Adds up bucket contents per type, sorted by count, highest first, then by type.
fn tally(buckets: Vec<Vec<(String, i64)>>) -> (u64, Vec<TypeCount>) {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (kind, count) in buckets.into_iter().flatten() {
        // Counts only ever go up; a negative one would be a foreign writer, and counts as none.
        *counts.entry(kind).or_default() += u64::try_from(count).unwrap_or(0);
    }
    let mut by_type: Vec<TypeCount> = counts
        .into_iter()
        .filter(|(_, count)| *count > 0)
        .map(|(r#type, count)| TypeCount { r#type, count })
        .collect();
    // The BTreeMap already ordered types ascending; a stable sort by count keeps that for ties.
    by_type.sort_by_key(|t| std::cmp::Reverse(t.count));
    (by_type.iter().map(|t| t.count).sum(), by_type)
}

// === impl AnalyticsApi ===

impl AnalyticsApi {
    pub fn new(store: Store, cfg: &Config, stop: watch::Receiver<bool>) -> Self {
        Self { store, live: cfg.live.clone(), max_properties_bytes: cfg.max_properties_bytes, stop }
    }

    async fn record(&self, req: RecordEventRequest) -> Result<RecordEventResponse, Status> {
        let owner = validate::owner_id(&req.owner_id)?;
        let kind = validate::event_type(&req.r#type)?;
        validate::properties(&req.properties)?;
        let properties = validate::encoded_properties(&req.properties, self.max_properties_bytes)?;

        let now = unix_now();
        let [minute, hour] = Granularity::ALL.map(|g| {
            let store = self.store.clone();
            let key = g.key(&owner, g.start(now));
            async move { store.hash_incr(&key, kind, 1, Some(g.ttl())).await }
        });
        // Both counts at once: one round trip of latency rather than two. If one fails the call
        // fails (UNAVAILABLE) and a retry may count the other twice; counts are statistics, and
        // that is cheaper than a transaction on every event.
        tokio::try_join!(minute, hour).map_err(ServiceError::from)?;
        let id = new_id();
        // Watchers are told after counting, so a watcher never sees an event a summary lacks.
        // Best effort: the event is counted already, and failing the call now would invite a
        // retry that counts it twice.
        if let Err(e) = live::publish(&self.store, &self.live, &owner, kind, &properties, &id, now).await {
            metrics::counter!("analytics_live_publish_failures_total").increment(1);
            tracing::warn!(owner_id = %owner, error = %e, "event counted but not published to watchers");
        }
        tracing::debug!(owner_id = %owner, r#type = kind, event_id = %id, "event recorded");
        Ok(RecordEventResponse { id, recorded_at: now })
    }

    async fn summary(&self, req: GetSummaryRequest) -> Result<Summary, ServiceError> {
        let owner = validate::owner_id(&req.owner_id)?;
        let window = Window::parse(&req.window)?;
        let span = window.span(unix_now());
        let keys: Vec<String> =
            span.starts.iter().map(|start| span.granularity.key(&owner, *start)).collect();
        let (total, by_type) = tally(self.store.hash_get_all_many(&keys).await?);
        Ok(Summary {
            owner_id: owner.to_string(),
            window: window.name.to_owned(),
            total,
            by_type,
            from: span.from,
            to: span.to,
        })
    }

    async fn watch(&self, req: WatchEventsRequest) -> Result<Watch, ServiceError> {
        let owner = validate::owner_id(&req.owner_id)?;
        let kind = match req.r#type.as_str() {
            "" => None,
            kind => Some(validate::event_type(kind)?.to_owned()),
        };
        let after = match req.after_id.as_str() {
            "" => None,
            after => Some(live::valid_position(after)?.to_owned()),
        };
        Watch::start(self.store.clone(), self.live.clone(), &owner, kind, after, self.stop.clone()).await
    }
}

type EventStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let watch = self.watch(request.into_inner()).await?;
        Ok(Response::new(Box::pin(watch.into_stream())))
    }

    async fn record_event(
        &self,
        request: Request<RecordEventRequest>,
    ) -> Result<Response<RecordEventResponse>, Status> {
        self.record(request.into_inner()).await.map(Response::new)
    }

    async fn get_summary(&self, request: Request<GetSummaryRequest>) -> Result<Response<Summary>, Status> {
        Ok(Response::new(self.summary(request.into_inner()).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(entries: &[(&str, i64)]) -> Vec<(String, i64)> {
        entries.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn tally_sums_across_buckets_and_sorts_by_count_then_type() {
        let (total, by_type) = tally(vec![
            bucket(&[("view", 3), ("click", 1)]),
            vec![],
            bucket(&[("signup", 2), ("click", 1), ("buy", 2)]),
        ]);
        let got: Vec<(&str, u64)> = by_type.iter().map(|t| (t.r#type.as_str(), t.count)).collect();
        assert_eq!(got, [("view", 3), ("buy", 2), ("click", 2), ("signup", 2)]);
        assert_eq!(total, 9);
    }

    #[test]
    fn tally_of_nothing_is_empty() {
        assert_eq!(tally(vec![vec![], vec![]]), (0, vec![]));
    }
}
