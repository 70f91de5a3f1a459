//! What the analytics service's test files share: a replica on a port-0 listener, a store config
//! and request builders.

use std::collections::HashMap;

use analytics_service::Config;
use mesh_core::store::StoreConfig;
use mesh_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use mesh_proto::analytics::{GetSummaryRequest, RecordEventRequest, Summary};
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use tonic::transport::Channel;

pub(crate) type Client = AnalyticsServiceClient<Channel>;

/// An analytics service serving `store`, and a client connected to it.
pub(crate) async fn replica(store: StoreConfig) -> (Component, Client) {
    replica_with(Config { store, ..Config::default() }).await
}

/// An analytics service with `cfg`, and a client connected to it.
pub(crate) async fn replica_with(cfg: Config) -> (Component, Client) {
    let component = Component::start(|listener, shutdown| analytics_service::serve(cfg, listener, shutdown))
        .await
        .unwrap();
    let client = AnalyticsServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

/// `redis`, under a prefix no other test uses.
pub(crate) fn redis_store(redis: &RedisServer) -> StoreConfig {
    StoreConfig {
        redis_url: Some(redis.url()),
        key_prefix: unique_prefix("analytics"),
        ..StoreConfig::default()
    }
}

/// An event of `kind` for `owner` with one property.
pub(crate) fn event(owner: &str, kind: &str) -> RecordEventRequest {
    RecordEventRequest {
        owner_id: owner.into(),
        r#type: kind.into(),
        properties: HashMap::from([("path".to_owned(), "/home".to_owned())]),
    }
}

/// `owner`'s summary over `window`.
pub(crate) async fn summary(client: &mut Client, owner: &str, window: &str) -> Summary {
    let req = GetSummaryRequest { owner_id: owner.into(), window: window.into() };
    client.get_summary(req).await.unwrap().into_inner()
}

/// A summary's counts as `(type, count)` pairs, in the order given.
pub(crate) fn counts(summary: &Summary) -> Vec<(&str, u64)> {
    summary.by_type.iter().map(|t| (t.r#type.as_str(), t.count)).collect()
}
