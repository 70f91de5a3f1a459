//! Leases of a principal's quota, so metering costs a gRPC hop per lease rather than per request.
//!
//! The quota service counts every request in one window per principal (atomic in the store,
//! shared by every replica and gateway). Asking it for each request was a gRPC call and two
//! store commands on every authenticated request. Instead a gateway asks it to count a small
//! slice of requests at once ([`QuotaService::lease`]), admits that many by itself, and gives
//! back what it did not admit ([`QuotaService::release`]) once the principal has been quiet for
//! `quota_leases.idle` or the gateway shuts down.
//!
//! Exact where it matters: a slice is counted before any request of it is admitted, so the mesh
//! never admits more than the limit, however many gateways lease. A slice is at most
//! `quota_leases.max_slice` and at most a `1/quota_leases.share` of what the window had left, so
//! the slices gateways hold shrink as the window runs out, down to one request at a time near
//! the end: the last requests of a window are counted one by one, as before. What a slice
//! withholds from other gateways meanwhile is given back when it idles. A gateway that dies
//! with a slice loses it until the window ends (under-admission, never over).
//!
//! What the client sees stays exact for one gateway: `RateLimit-Remaining` is what the service
//! has left plus what this gateway's slice has left.
//!
//! [`QuotaService::lease`]: mesh_proto::quota::quota_service_server::QuotaService::lease
//! [`QuotaService::release`]: mesh_proto::quota::quota_service_server::QuotaService::release

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_proto::quota::{LeaseRequest, QuotaStatus, ReleaseRequest};
use serde::{Deserialize, Serialize};

use crate::clients::{CallError, Quota};

/// How gateways lease quota.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LeaseConfig {
    /// Largest slice of a principal's window one gateway leases at once; `1` counts every
    /// request with the quota service, as without leases. Default: 100.
    pub max_slice: u32,
    /// A slice is at most this fraction (1/share) of what the window had left. Default: 16.
    pub share: u32,
    /// A principal's unused slice is given back after this long without a request. Default: 1s.
    #[serde(with = "humantime_serde")]
    #[schemars(with = "mesh_core::config::HumanDuration")]
    pub idle: Duration,
    /// Principals with a lease at once; others are counted one request at a time. Default: 100000.
    pub max_principals: usize,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self { max_slice: 100, share: 16, idle: Duration::from_secs(1), max_principals: 100_000 }
    }
}

/// What a lease decided for one request.
#[derive(Debug)]
pub enum Leased {
    /// Admitted or refused, with the window as this gateway sees it.
    Status(QuotaStatus),
    /// The quota service could not answer.
    Failed(CallError),
}

/// This gateway's leases, one per principal.
#[derive(Debug)]
pub struct Leases {
    quota: Quota,
    cfg: LeaseConfig,
    slices: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slice>>>>,
}

/// One principal's slice.
#[derive(Debug)]
struct Slice {
    /// Requests leased and not admitted yet.
    left: u32,
    /// The window as the service reported it with the last lease (its `remaining` excludes
    /// `left`: the service counted the slice already).
    status: Option<QuotaStatus>,
    touched: Instant,
    /// Given back and out of the map: a request that found it just before must take a new one,
    /// or what it leased here would never be given back.
    retired: bool,
}

// === impl Leases ===

impl Leases {
    pub fn new(quota: Quota, cfg: LeaseConfig) -> Self {
        Self { quota, cfg, slices: Mutex::default() }
    }

    fn slices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Slice>>>> {
        self.slices.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The slice of `principal`, made if there is room for one.
    fn slice(&self, principal: &str) -> Option<Arc<tokio::sync::Mutex<Slice>>> {
        let mut slices = self.slices();
        if let Some(slice) = slices.get(principal) {
            return Some(slice.clone());
        }
        if slices.len() >= self.cfg.max_principals {
            return None;
        }
        let slice = Arc::new(tokio::sync::Mutex::new(Slice {
            left: 0,
            status: None,
            touched: Instant::now(),
            retired: false,
        }));
        slices.insert(principal.to_owned(), slice.clone());
        Some(slice)
    }

    /// Admits or refuses one request of `principal`: from its slice when one is left, else from a
    /// new lease. Requests of one principal wait for each other only while a lease is asked for.
    pub async fn take(&self, principal: &str) -> Leased {
        let mut slice = loop {
            let Some(slice) = self.slice(principal) else {
                return self.lease_one(principal).await;
            };
            let slice = slice.lock_owned().await;
            if !slice.retired {
                break slice;
            }
        };
        slice.touched = Instant::now();
        let now = mesh_core::ids::unix_now();
        if let Some(status) = &slice.status
            && status.reset_at <= now
        {
            // The window ended: its slice counts for nothing any more.
            slice.left = 0;
            slice.status = None;
        }
        if slice.left > 0 {
            slice.left -= 1;
            return Leased::Status(slice.seen(true));
        }
        let want = self.want(slice.status.as_ref());
        let request = LeaseRequest { principal: principal.to_owned(), want };
        match self.quota.lease(request).await {
            Ok(grant) => {
                let Some(status) = grant.status else {
                    return Leased::Failed(CallError {
                        service: "quota",
                        status: tonic::Status::internal("a lease without its window"),
                    });
                };
                slice.status = Some(status);
                if grant.granted == 0 {
                    slice.left = 0;
                    return Leased::Status(slice.seen(false));
                }
                slice.left = grant.granted - 1;
                Leased::Status(slice.seen(true))
            }
            Err(failure) => Leased::Failed(failure),
        }
    }

    /// One request counted on its own (no room for another lease).
    async fn lease_one(&self, principal: &str) -> Leased {
        let request = LeaseRequest { principal: principal.to_owned(), want: 1 };
        match self.quota.lease(request).await {
            Ok(grant) => match grant.status {
                Some(mut status) => {
                    status.allowed = grant.granted > 0;
                    Leased::Status(status)
                }
                None => Leased::Failed(CallError {
                    service: "quota",
                    status: tonic::Status::internal("a lease without its window"),
                }),
            },
            Err(failure) => Leased::Failed(failure),
        }
    }

    /// The size of the next slice: a share of what the window had left, within the bounds; one
    /// request when nothing is known yet.
    fn want(&self, last: Option<&QuotaStatus>) -> u32 {
        let Some(last) = last else { return 1 };
        let share = last.remaining / u64::from(self.cfg.share.max(1));
        share.clamp(1, u64::from(self.cfg.max_slice.max(1))) as u32
    }

    /// Gives back the slices of principals quiet for `idle` (all of them when `everything`).
    pub async fn release_idle(&self, everything: bool) {
        let idle: Vec<(String, Arc<tokio::sync::Mutex<Slice>>)> = {
            let slices = self.slices();
            slices.iter().map(|(principal, slice)| (principal.clone(), slice.clone())).collect()
        };
        for (principal, slice) in idle {
            let mut slice = slice.lock().await;
            if !everything && slice.touched.elapsed() < self.cfg.idle {
                continue;
            }
            slice.retired = true;
            let left = std::mem::take(&mut slice.left);
            let reset_at = slice.status.as_ref().map(|s| s.reset_at);
            self.slices().remove(&principal);
            let (Some(reset_at), true) = (reset_at, left > 0) else { continue };
            if reset_at <= mesh_core::ids::unix_now() {
                continue;
            }
            let request = ReleaseRequest { principal: principal.clone(), reset_at, count: left };
            if let Err(failure) = self.quota.release(request).await {
                // Lost: the window admits that many fewer requests, never more.
                tracing::debug!(%principal, left, code = ?failure.status.code(), "could not give back a quota slice");
            }
        }
    }

    /// Gives back idle slices every `idle` until `shutdown`, then every slice.
    pub fn spawn_releaser(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let every = self.cfg.idle.max(Duration::from_millis(100));
        tokio::spawn(async move {
            let releaser = async {
                loop {
                    tokio::time::sleep(every).await;
                    self.release_idle(false).await;
                }
            };
            tokio::select! {
                () = releaser => {}
                () = shutdown => self.release_idle(true).await,
            }
        });
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.slices().len()
    }
}

// === impl Slice ===

impl Slice {
    /// The window as this gateway sees it: what the service has left plus what the slice has.
    fn seen(&self, allowed: bool) -> QuotaStatus {
        let mut status = self.status.clone().unwrap_or_default();
        status.remaining = status.remaining.saturating_add(u64::from(self.left));
        status.used = status.limit.saturating_sub(status.remaining);
        status.allowed = allowed;
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leases(cfg: LeaseConfig) -> Leases {
        let services = crate::config::Services::default();
        let clients = crate::clients::Clients::dial(crate::Domain::Identity, &services).unwrap();
        Leases::new(clients.quota, cfg)
    }

    #[tokio::test]
    async fn a_slice_is_a_share_of_what_was_left_within_its_bounds() {
        let leases = leases(LeaseConfig { max_slice: 100, share: 16, ..LeaseConfig::default() });
        let left = |remaining| QuotaStatus { remaining, ..QuotaStatus::default() };
        assert_eq!(leases.want(None), 1, "nothing known: one request");
        assert_eq!(leases.want(Some(&left(1_000_000))), 100);
        assert_eq!(leases.want(Some(&left(320))), 20);
        assert_eq!(leases.want(Some(&left(15))), 1, "near the end, one by one");
        assert_eq!(leases.want(Some(&left(0))), 1);
        let one = leases_with_slice(1);
        assert_eq!(one.want(Some(&left(1_000_000))), 1, "max_slice 1 counts every request");
        assert_eq!(leases.held(), 0);
    }

    fn leases_with_slice(max_slice: u32) -> Leases {
        leases(LeaseConfig { max_slice, ..LeaseConfig::default() })
    }

    #[test]
    fn what_a_gateway_shows_adds_its_slice_to_what_the_service_has_left() {
        let status =
            QuotaStatus { limit: 100, used: 40, remaining: 60, allowed: true, ..QuotaStatus::default() };
        let slice = Slice { left: 9, status: Some(status), touched: Instant::now(), retired: false };
        let seen = slice.seen(true);
        assert_eq!((seen.remaining, seen.used, seen.allowed), (69, 31, true));
    }
}
