//! What the auth tests share: a replica on a port-0 listener, its client, and a token verifier
//! that does what a gateway does.

#![allow(dead_code)]

use std::collections::HashMap;

use auth_service::{Config, PasswordHashConfig};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use mesh_core::store::StoreConfig;
use mesh_proto::auth::auth_service_client::AuthServiceClient;
use mesh_proto::auth::{GetJwksRequest, LoginRequest, RegisterRequest, TokenPair};
use mesh_tests::{Component, RedisServer, grpc_channel, unique_prefix};
use serde::Deserialize;
use tonic::transport::Channel;

pub(crate) type Client = AuthServiceClient<Channel>;

pub(crate) const PASSWORD: &str = "correct horse battery";

/// A config with the in-process store and a cheap (but still argon2id) password hash: the
/// production cost makes debug-build tests take seconds per login.
pub(crate) fn config() -> Config {
    config_with(StoreConfig::default())
}

pub(crate) fn config_with(store: StoreConfig) -> Config {
    Config {
        store,
        password_hash: PasswordHashConfig { memory_kib: 256, iterations: 1, parallelism: 1 },
        ..Config::default()
    }
}

/// A store config on `redis` under a prefix no other test uses.
pub(crate) fn redis_store(redis: &RedisServer) -> StoreConfig {
    StoreConfig { redis_url: Some(redis.url()), key_prefix: unique_prefix("auth"), ..StoreConfig::default() }
}

pub(crate) async fn replica(cfg: Config) -> (Component, Client) {
    let component =
        Component::start(|listener, shutdown| auth_service::serve(cfg, listener, shutdown)).await.unwrap();
    let client = AuthServiceClient::new(grpc_channel(component.addr).await.unwrap());
    (component, client)
}

pub(crate) fn register_request(email: &str) -> RegisterRequest {
    RegisterRequest { email: email.into(), password: PASSWORD.into(), display_name: "Ada".into() }
}

/// Registers `email` with [`PASSWORD`] and returns the user id.
pub(crate) async fn register(client: &Client, email: &str) -> String {
    client.clone().register(register_request(email)).await.unwrap().into_inner().user_id
}

pub(crate) async fn login(client: &Client, email: &str) -> TokenPair {
    client
        .clone()
        .login(LoginRequest { email: email.into(), password: PASSWORD.into() })
        .await
        .unwrap()
        .into_inner()
}

/// The claims a gateway reads from an access token.
#[derive(Debug, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) email: String,
    pub(crate) roles: Vec<String>,
    pub(crate) sid: String,
    pub(crate) iss: String,
    pub(crate) aud: String,
    pub(crate) iat: i64,
    pub(crate) nbf: i64,
    pub(crate) exp: i64,
    pub(crate) jti: String,
}

/// Verifies `token` the way a gateway does: the JWKS fetched from the service, the key chosen by
/// `kid`, EdDSA pinned, and iss, aud, exp and nbf all checked.
pub(crate) async fn verify_access_token(client: &Client, token: &str) -> Result<Claims, String> {
    let jwks = client.clone().get_jwks(GetJwksRequest {}).await.map_err(|e| e.to_string())?.into_inner();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("token has no kid")?;
    let keys: HashMap<&str, &str> = jwks.keys.iter().map(|k| (k.kid.as_str(), k.x.as_str())).collect();
    let x = keys.get(kid.as_str()).ok_or_else(|| format!("no published key {kid}"))?;
    let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&jwks.issuer]);
    validation.set_audience(&[&jwks.audience]);
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|d| d.claims).map_err(|e| e.to_string())
}

/// A fresh email so tests sharing a store never collide.
pub(crate) fn email(name: &str) -> String {
    format!("{name}-{}@example.com", mesh_core::ids::new_id().to_lowercase())
}
