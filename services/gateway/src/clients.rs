//! Typed gRPC clients to every service, each over a channel balanced across its replicas.

use std::time::Duration;

use mesh_core::client::{ClientError, ServiceChannel as Channel, service_channel};
use mesh_proto::analytics::analytics_service_client::AnalyticsServiceClient;
use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
use mesh_proto::auth::auth_service_client::AuthServiceClient;
use mesh_proto::orders::orders_service_client::OrdersServiceClient;
use mesh_proto::quota::quota_service_client::QuotaServiceClient;
use mesh_proto::user::user_service_client::UserServiceClient;
use tonic::metadata::MetadataValue;

use crate::config::Services;
use crate::context::{REQUEST_ID, RequestId};

/// One client per service. Cloning is cheap and shares the channels.
#[derive(Clone, Debug)]
pub struct Clients {
    pub auth: AuthServiceClient<Channel>,
    pub user: UserServiceClient<Channel>,
    pub quota: QuotaServiceClient<Channel>,
    pub orders: OrdersServiceClient<Channel>,
    pub articles: ArticlesServiceClient<Channel>,
    pub analytics: AnalyticsServiceClient<Channel>,
    deadlines: Deadlines,
    /// The same channels, for the service view (`/mesh/services`).
    channels: Vec<Channel>,
}

/// The per-call deadline of each service, sent as `grpc-timeout`.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub auth: Duration,
    pub user: Duration,
    pub quota: Duration,
    pub orders: Duration,
    pub articles: Duration,
    pub analytics: Duration,
}

impl Clients {
    /// Lazy channels: nothing connects until the first call, so a gateway starts while services
    /// are still coming up. Must be called inside a Tokio runtime.
    pub fn new(services: &Services) -> Result<Self, ClientError> {
        let channels = [
            service_channel("auth", &services.auth)?,
            service_channel("user", &services.user)?,
            service_channel("quota", &services.quota)?,
            service_channel("orders", &services.orders)?,
            service_channel("articles", &services.articles)?,
            service_channel("analytics", &services.analytics)?,
        ];
        Ok(Self {
            auth: AuthServiceClient::new(channels[0].clone()),
            user: UserServiceClient::new(channels[1].clone()),
            quota: QuotaServiceClient::new(channels[2].clone()),
            orders: OrdersServiceClient::new(channels[3].clone()),
            articles: ArticlesServiceClient::new(channels[4].clone()),
            analytics: AnalyticsServiceClient::new(channels[5].clone()),
            deadlines: Deadlines {
                auth: services.auth.request_timeout,
                user: services.user.request_timeout,
                quota: services.quota.request_timeout,
                orders: services.orders.request_timeout,
                articles: services.articles.request_timeout,
                analytics: services.analytics.request_timeout,
            },
            channels: channels.to_vec(),
        })
    }

    /// Each service's healthy replicas and breaker state, as this gateway sees them.
    pub fn view(&self) -> Vec<serde_json::Value> {
        self.channels
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.service(),
                    "healthy_replicas": c.healthy_replicas(),
                    "breaker": c.breaker_state().as_str(),
                })
            })
            .collect()
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }
}

/// A gRPC request carrying the request id and a deadline (`grpc-timeout`): the service's own
/// deadline, or what remains of the whole request's, whichever is sooner — so a service never
/// works on an answer the client will not wait for.
pub fn grpc<T>(request_id: &RequestId, deadline: Duration, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let deadline = crate::context::remaining().map_or(deadline, |left| left.min(deadline));
    request.set_timeout(deadline.max(Duration::from_millis(1)));
    if let Ok(value) = MetadataValue::try_from(request_id.as_str()) {
        request.metadata_mut().insert(REQUEST_ID, value);
    }
    request
}
