//! What the user service's test files share: a replica on a port-0 listener and a store config.

use mesh_core::store::StoreConfig;
use mesh_proto::user::CreateProfileRequest;
use mesh_proto::user::user_service_client::UserServiceClient;
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use tonic::transport::Channel;
use user_service::Config;

/// A user service serving `store`, and a client connected to it.
pub(crate) async fn replica(store: StoreConfig) -> (Component, UserServiceClient<Channel>) {
    let cfg = Config { store, ..Config::default() };
    let component =
        Component::start(|listener, shutdown| user_service::serve(cfg, listener, shutdown)).await.unwrap();
    let client = UserServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

/// `redis`, under a prefix no other test uses.
pub(crate) fn redis_store(redis: &RedisServer) -> StoreConfig {
    StoreConfig { redis_url: Some(redis.url()), key_prefix: unique_prefix("user"), ..StoreConfig::default() }
}

/// A valid creation request for a fresh user id.
pub(crate) fn new_user(display_name: &str) -> CreateProfileRequest {
    let user_id = mesh_core::ids::new_id();
    CreateProfileRequest {
        email: format!("{}@example.org", user_id.to_lowercase()),
        user_id,
        display_name: display_name.into(),
    }
}
