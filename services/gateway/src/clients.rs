//! One typed handle per service, built only for the services the gateway's domain calls.
//!
//! A handle ([`Handle`]) sets each call's metadata (the deadline: the service's own, or what
//! remains of the request's, whichever is sooner; the request id), cuts a call its transport
//! leaves hanging at that deadline, and keeps a failure's `tonic::Status` in a [`CallError`],
//! which `?` turns into an [`ApiError`] through the one table ([`ApiError::from_status`]).
//! Handlers read as `state.users.get_profile(request).await?`.
//!
//! A handle calls through a [`Transport`]: in production the service's balanced
//! [`ServiceChannel`] (fail fast, bulkhead, breaker, retries; see `mesh_core::client`); in tests
//! any `tower::Service`, e.g. a `tower::service_fn` answering a chosen status, hanging or
//! answering slowly, or a tonic server called in-process ([`Clients::with`]). That is the seam
//! through which gateway tests drive the fallback policy with `oneshot`, without a socket.

use std::future::Future;
use std::time::Duration;

use mesh_core::client::{ClientError, ServiceChannel, service_channel};
use mesh_proto::analytics::{self as analytics_pb, analytics_service_client::AnalyticsServiceClient};
use mesh_proto::articles::{self as articles_pb, articles_service_client::ArticlesServiceClient};
use mesh_proto::auth::{self as auth_pb, auth_service_client::AuthServiceClient};
use mesh_proto::orders::{self as orders_pb, orders_service_client::OrdersServiceClient};
use mesh_proto::quota::{self as quota_pb, quota_service_client::QuotaServiceClient};
use mesh_proto::user::{self as user_pb, user_service_client::UserServiceClient};
use tonic::codec::Streaming;
use tonic::metadata::MetadataValue;
use tower::util::BoxCloneSyncService;

use crate::config::{Domain, Services};
use crate::context::REQUEST_ID;
use crate::error::ApiError;

/// What a transport's service may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a handle sends its calls through: any cloneable HTTP/2 gRPC service. Its failures are
/// already the `Status` tonic would make of them ([`tonic::Status::from_error`]): a concrete
/// error type keeps the handlers' futures provably `Send` (with a boxed `dyn Error`, rustc's
/// auto-trait check trips on its erased lifetime).
pub type Transport =
    BoxCloneSyncService<http::Request<tonic::body::Body>, http::Response<tonic::body::Body>, tonic::Status>;

/// A [`Transport`] over any gRPC service, e.g. a tonic server called in-process or a
/// `tower::service_fn`.
pub fn transport<S>(service: S) -> Transport
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    let to_status = |e: S::Error| tonic::Status::from_error(e.into());
    BoxCloneSyncService::new(tower::ServiceExt::map_err(service, to_status))
}

/// A transport for a service this gateway's domain never calls: it is not dialled (so it is
/// never probed, nor shown as down), and a call answers UNAVAILABLE at once.
fn not_dialled(service: &'static str) -> Transport {
    transport(tower::service_fn(move |_: http::Request<tonic::body::Body>| async move {
        let status = tonic::Status::unavailable(format!("this gateway does not call the {service} service"));
        Ok::<_, std::convert::Infallible>(status.into_http())
    }))
}

/// A failed call: the service's status, kept for fallback decisions (`fallback::after_failure`,
/// the order queue); `?` turns it into the [`ApiError`] the one table maps it to.
#[derive(Debug)]
pub struct CallError {
    /// The service called, as it appears in problems and logs.
    pub service: &'static str,
    pub status: tonic::Status,
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        ApiError::from_status(e.service, &e.status)
    }
}

impl CallError {
    /// The status alone, for code written against `Result<T, tonic::Status>`.
    pub fn into_status(self) -> tonic::Status {
        self.status
    }
}

// === impl Handle ===

/// A typed handle on one service: a tonic client over a [`Transport`], the service's name and
/// per-call deadline. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle<C> {
    service: &'static str,
    deadline: Duration,
    client: C,
}

/// How long past a call's deadline its handle waits before cutting it: the transport's own
/// deadline (tonic enforces `grpc-timeout`) answers first when it has one.
const CUT_GRACE: Duration = Duration::from_millis(50);

impl<C> Handle<C> {
    /// The service this handle calls.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The message with the call's metadata, and the deadline it carries as `grpc-timeout`: the
    /// service's own, or what remains of the whole request's, whichever is sooner — so a service
    /// never works on an answer the client will not wait for.
    fn request<T>(&self, message: T) -> (tonic::Request<T>, Duration) {
        let mut request = tonic::Request::new(message);
        let deadline = crate::context::remaining().map_or(self.deadline, |left| left.min(self.deadline));
        let deadline = deadline.max(Duration::from_millis(1));
        request.set_timeout(deadline);
        if let Some(id) = crate::context::request_id()
            && let Ok(value) = MetadataValue::try_from(id.as_str())
        {
            request.metadata_mut().insert(REQUEST_ID, value);
        }
        (request, deadline)
    }

    /// Awaits `call`, cut at `deadline` (DEADLINE_EXCEEDED) if its transport lets it hang.
    async fn finish<T>(
        &self,
        deadline: Duration,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, CallError> {
        let failed = |status| CallError { service: self.service, status };
        match tokio::time::timeout(deadline + CUT_GRACE, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(failed(status)),
            Err(_) => Err(failed(tonic::Status::deadline_exceeded(format!(
                "{} did not answer within {deadline:?}",
                self.service
            )))),
        }
    }
}

/// One method per RPC on the handle of `$client`: metadata, call, cut at the deadline.
macro_rules! rpcs {
    ($client:ident { $($rpc:ident($req:ty) -> $res:ty;)* }) => {
        impl Handle<$client<Transport>> {
            $(
                #[doc = concat!("`", stringify!($rpc), "` with the call's deadline and request id.")]
                pub fn $rpc(
                    &self,
                    message: $req,
                ) -> impl Future<Output = Result<$res, CallError>> + Send + '_ {
                    let (request, deadline) = self.request(message);
                    let mut client = self.client.clone();
                    self.finish(deadline, async move { client.$rpc(request).await })
                }
            )*
        }
    };
}

/// The auth service: credentials, sessions, API keys, the JWKS.
pub type Auth = Handle<AuthServiceClient<Transport>>;
/// The user service: profiles.
pub type Users = Handle<UserServiceClient<Transport>>;
/// The quota service: metering and plans.
pub type Quota = Handle<QuotaServiceClient<Transport>>;
/// The orders service.
pub type Orders = Handle<OrdersServiceClient<Transport>>;
/// The articles service: the catalogue.
pub type Articles = Handle<ArticlesServiceClient<Transport>>;
/// The analytics service: events and summaries.
pub type Analytics = Handle<AnalyticsServiceClient<Transport>>;

rpcs!(AuthServiceClient {
    register(auth_pb::RegisterRequest) -> auth_pb::RegisterResponse;
    login(auth_pb::LoginRequest) -> auth_pb::TokenPair;
    refresh(auth_pb::RefreshRequest) -> auth_pb::TokenPair;
    logout(auth_pb::LogoutRequest) -> auth_pb::LogoutResponse;
    create_api_key(auth_pb::CreateApiKeyRequest) -> auth_pb::CreateApiKeyResponse;
    list_api_keys(auth_pb::ListApiKeysRequest) -> auth_pb::ListApiKeysResponse;
    delete_api_key(auth_pb::DeleteApiKeyRequest) -> auth_pb::DeleteApiKeyResponse;
    verify_api_key(auth_pb::VerifyApiKeyRequest) -> auth_pb::Principal;
    get_jwks(auth_pb::GetJwksRequest) -> auth_pb::Jwks;
});

rpcs!(UserServiceClient {
    create_profile(user_pb::CreateProfileRequest) -> user_pb::Profile;
    get_profile(user_pb::GetProfileRequest) -> user_pb::Profile;
    update_profile(user_pb::UpdateProfileRequest) -> user_pb::Profile;
});

rpcs!(QuotaServiceClient {
    consume(quota_pb::ConsumeRequest) -> quota_pb::QuotaStatus;
    get_quota(quota_pb::GetQuotaRequest) -> quota_pb::QuotaStatus;
    lease(quota_pb::LeaseRequest) -> quota_pb::LeaseGrant;
    release(quota_pb::ReleaseRequest) -> quota_pb::QuotaStatus;
});

rpcs!(OrdersServiceClient {
    create_order(orders_pb::CreateOrderRequest) -> orders_pb::Order;
    get_order(orders_pb::GetOrderRequest) -> orders_pb::Order;
    list_orders(orders_pb::ListOrdersRequest) -> orders_pb::ListOrdersResponse;
    watch_order(orders_pb::WatchOrderRequest) -> Streaming<orders_pb::OrderEvent>;
});

rpcs!(ArticlesServiceClient {
    create_article(articles_pb::CreateArticleRequest) -> articles_pb::Article;
    get_article(articles_pb::GetArticleRequest) -> articles_pb::Article;
    list_articles(articles_pb::ListArticlesRequest) -> articles_pb::ListArticlesResponse;
});

rpcs!(AnalyticsServiceClient {
    record_event(analytics_pb::RecordEventRequest) -> analytics_pb::RecordEventResponse;
    get_summary(analytics_pb::GetSummaryRequest) -> analytics_pb::Summary;
    watch_events(analytics_pb::WatchEventsRequest) -> Streaming<analytics_pb::Event>;
});

// === impl Service ===

/// The services a gateway may call, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Auth,
    User,
    Quota,
    Orders,
    Articles,
    Analytics,
}

impl Service {
    pub const ALL: [Service; 6] =
        [Self::Auth, Self::User, Self::Quota, Self::Orders, Self::Articles, Self::Analytics];

    /// The name in config keys (`services.<name>`), problems, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::User => "user",
            Self::Quota => "quota",
            Self::Orders => "orders",
            Self::Articles => "articles",
            Self::Analytics => "analytics",
        }
    }

    /// The services `domain`'s routes call. Both domains authenticate (JWKS, API key
    /// verification: auth) and meter (quota).
    pub fn of(domain: Domain) -> &'static [Service] {
        match domain {
            Domain::Identity => &[Self::Auth, Self::User, Self::Quota],
            Domain::Business => &[Self::Auth, Self::Quota, Self::Orders, Self::Articles, Self::Analytics],
        }
    }

    fn config(self, services: &Services) -> &mesh_core::client::ClientConfig {
        match self {
            Self::Auth => &services.auth,
            Self::User => &services.user,
            Self::Quota => &services.quota,
            Self::Orders => &services.orders,
            Self::Articles => &services.articles,
            Self::Analytics => &services.analytics,
        }
    }
}

// === impl Clients ===

/// A handle per service, by name. A service outside the gateway's domain has a handle that is
/// never dialled (no route of the domain calls it).
#[derive(Clone, Debug)]
pub struct Clients {
    pub auth: Auth,
    pub users: Users,
    pub quota: Quota,
    pub orders: Orders,
    pub articles: Articles,
    pub analytics: Analytics,
    /// The dialled channels, for the service view (`/mesh/services`).
    pub channels: Channels,
}

/// The channels a gateway dialled, for its view of its services.
#[derive(Clone, Debug, Default)]
pub struct Channels(Vec<ServiceChannel>);

impl Channels {
    /// Each dialled service's healthy replicas and breaker state, as this gateway sees them.
    pub fn view(&self) -> Vec<serde_json::Value> {
        self.0
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
}

impl Clients {
    /// Lazy channels to the services `domain` calls, and to no other: nothing connects until the
    /// first call, so a gateway starts while its services are still coming up. The other
    /// domain's `services.*` keys are read and ignored. Must be called inside a Tokio runtime.
    pub fn dial(domain: Domain, services: &Services) -> Result<Self, ClientError> {
        let mut channels = Vec::new();
        for &service in Service::of(domain) {
            channels.push((service, service_channel(service.name(), service.config(services))?));
        }
        let mut clients = Self::with(services, |service| {
            channels.iter().find(|(s, _)| *s == service).map(|(_, c)| transport(c.clone()))
        });
        clients.channels = Channels(channels.into_iter().map(|(_, c)| c).collect());
        Ok(clients)
    }

    /// Handles over the transports `connect` gives (`None`: not dialled), with the deadlines of
    /// `services`. The seam for tests: pass `tower::service_fn`s or in-process tonic servers.
    pub fn with(services: &Services, mut connect: impl FnMut(Service) -> Option<Transport>) -> Self {
        let mut handle = |service: Service| {
            let transport = connect(service).unwrap_or_else(|| not_dialled(service.name()));
            (service.name(), service.config(services).request_timeout, transport)
        };
        fn make<C>(
            (service, deadline, transport): (&'static str, Duration, Transport),
            client: impl FnOnce(Transport) -> C,
        ) -> Handle<C> {
            Handle { service, deadline, client: client(transport) }
        }
        Self {
            auth: make(handle(Service::Auth), AuthServiceClient::new),
            users: make(handle(Service::User), UserServiceClient::new),
            quota: make(handle(Service::Quota), QuotaServiceClient::new),
            orders: make(handle(Service::Orders), OrdersServiceClient::new),
            articles: make(handle(Service::Articles), ArticlesServiceClient::new),
            analytics: make(handle(Service::Analytics), AnalyticsServiceClient::new),
            channels: Channels::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_domain_dials_only_what_its_routes_call() {
        assert_eq!(Service::of(Domain::Identity), &[Service::Auth, Service::User, Service::Quota]);
        assert!(!Service::of(Domain::Business).contains(&Service::User));
        for domain in [Domain::Identity, Domain::Business] {
            assert!(Service::of(domain).contains(&Service::Auth), "every domain authenticates");
            assert!(Service::of(domain).contains(&Service::Quota), "every domain meters");
        }
    }

    #[tokio::test]
    async fn a_service_outside_the_domain_is_not_dialled_and_answers_unavailable() {
        let clients = Clients::dial(Domain::Identity, &Services::default()).unwrap();
        let names: Vec<_> = clients.channels.view().iter().map(|v| v["name"].clone()).collect();
        assert_eq!(names, ["auth", "user", "quota"]);
        let err = clients.orders.get_order(orders_pb::GetOrderRequest::default()).await.unwrap_err();
        assert_eq!((err.service, err.status.code()), ("orders", tonic::Code::Unavailable));
    }

    #[tokio::test]
    async fn a_hung_transport_is_cut_at_the_deadline() {
        let mut services = Services::default();
        services.user.request_timeout = Duration::from_millis(100);
        let hung = transport(tower::service_fn(|_: http::Request<tonic::body::Body>| async {
            std::future::pending::<Result<http::Response<tonic::body::Body>, BoxError>>().await
        }));
        let clients = Clients::with(&services, |s| (s == Service::User).then(|| hung.clone()));
        let started = std::time::Instant::now();
        let err = clients.users.get_profile(user_pb::GetProfileRequest::default()).await.unwrap_err();
        assert_eq!(err.status.code(), tonic::Code::DeadlineExceeded);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
