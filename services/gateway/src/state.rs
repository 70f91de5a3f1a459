//! What every handler of a gateway shares.

use std::sync::Arc;

use mesh_core::store::Store;

use crate::authn::{ApiKeyVerifier, JwksVerifier};
use crate::clients::Clients;
use crate::config::Config;
use crate::fallback::LastKnownGood;
use crate::quota::LocalQuota;
use crate::streams::StreamSlots;

#[derive(Clone, Debug)]
pub struct AppState {
    pub cfg: Arc<Config>,
    pub clients: Clients,
    pub jwks: Arc<JwksVerifier>,
    pub api_keys: ApiKeyVerifier,
    /// Redis in deployments: caches, last-known-good answers, the order queue.
    pub store: Store,
    /// Last-known-good answers for fallbacks, and the response cache of public reads.
    pub lkg: LastKnownGood,
    /// The approximate limit kept per principal while the quota service is down.
    pub local_quota: Arc<LocalQuota>,
    /// Open server-sent event streams, against their caps.
    pub streams: Arc<StreamSlots>,
}
