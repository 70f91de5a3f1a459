//! What every handler of a gateway shares.

use std::sync::Arc;

use mesh_core::store::Store;

use crate::authn::Authenticator;
use crate::clients::{Analytics, Articles, Auth, Channels, Orders, Quota, Users};
use crate::config::Config;
use crate::fallback::LastKnownGood;
use crate::quota::Meter;
use crate::streams::StreamSlots;

/// What every handler shares, behind one `Arc`: axum clones a handler's state for every request,
/// and cloning each channel, verifier and store handle was a measurable share of a request's
/// time (the profile of `GET /v1/users/me`).
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub cfg: Arc<Config>,
    /// One handle per service ([`crate::clients`]); those outside the domain are never dialled.
    pub auth: Auth,
    pub users: Users,
    pub quota: Quota,
    pub orders: Orders,
    pub articles: Articles,
    pub analytics: Analytics,
    /// The dialled channels, for the gateway's view of its services.
    pub channels: Channels,
    /// Who is calling: JWTs against the JWKS, API keys through auth (the `authenticate` step).
    pub authn: Authenticator,
    /// Counting each request against its principal's quota (the `meter` step).
    pub meter: Meter,
    /// Redis in deployments: caches, last-known-good answers, the order queue.
    pub store: Store,
    /// Last-known-good answers for fallbacks, and the response cache of public reads.
    pub lkg: LastKnownGood,
    /// Open server-sent event streams, against their caps.
    pub streams: Arc<StreamSlots>,
    /// Login lockouts this gateway has seen, so a flood against a locked key costs no store trip.
    pub seen_locks: Arc<crate::lockouts::SeenLocks>,
}
