//! gRPC client channels to a service's replicas.
//!
//! One channel per service, balanced over every configured replica address by tonic's balance
//! channel (tower's p2c over ready endpoints). Channels are lazy: a replica that is down at
//! start does not stop the caller from starting, and calls go to the replicas that are up.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, Endpoint};

/// How to reach one service.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// Replica addresses, `http://host:port`. Default: none (set per service).
    pub endpoints: Vec<String>,
    /// Time allowed to open a connection to one replica. Default: 1s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of one call, sent to the server as `grpc-timeout`. Default: 5s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl ClientConfig {
    /// A config reaching the given replicas with default timeouts.
    pub fn to(endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self { endpoints: endpoints.into_iter().map(Into::into).collect(), ..Self::default() }
    }
}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints configured")]
    NoEndpoints,
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint { endpoint: String, reason: String },
}

/// A lazy channel balanced over every endpoint of `cfg`. Must be called inside a Tokio runtime.
pub fn balanced_channel(cfg: &ClientConfig) -> Result<Channel, ClientError> {
    if cfg.endpoints.is_empty() {
        return Err(ClientError::NoEndpoints);
    }
    let endpoints = cfg
        .endpoints
        .iter()
        .map(|uri| {
            Endpoint::from_shared(uri.clone())
                .map(|e| {
                    e.connect_timeout(cfg.connect_timeout)
                        .timeout(cfg.request_timeout)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(Duration::from_secs(30))
                })
                .map_err(|e| ClientError::InvalidEndpoint { endpoint: uri.clone(), reason: e.to_string() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Channel::balance_list(endpoints.into_iter()))
}
