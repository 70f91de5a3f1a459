//! `mesh.quota.v1.QuotaService`.

use std::time::Duration;

use mesh_core::ServiceError;
use mesh_core::ids::unix_now;
use mesh_core::store::{Bounded, Store};
use mesh_proto::quota::quota_service_server::QuotaService;
use mesh_proto::quota::{
    ConsumeRequest, GetQuotaRequest, LeaseGrant, LeaseRequest, QuotaStatus, ReleaseRequest, SetPlanRequest,
};
use tonic::{Request, Response, Status};

use crate::config::{Config, Plan};

/// The largest cost one call may consume; bigger asks are a client bug.
const MAX_COST: u32 = 10_000;

/// Atomic tries of one lease before it answers "nothing this time" (each lost try means other
/// callers took what was left).
const LEASE_TRIES: usize = 8;

pub struct QuotaApi {
    cfg: Config,
    store: Store,
}

/// The window a principal is counted in right now.
struct Window<'a> {
    plan_name: String,
    plan: &'a Plan,
    key: String,
    reset_at: i64,
}

fn validate_principal(principal: &str) -> Result<(), ServiceError> {
    if principal.is_empty() {
        return Err(ServiceError::invalid("principal: must not be empty"));
    }
    if principal.len() > 128 || principal.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ServiceError::invalid(
            "principal: at most 128 characters, no spaces or control characters",
        ));
    }
    Ok(())
}

// === impl QuotaApi ===

impl QuotaApi {
    pub fn new(cfg: Config, store: Store) -> Self {
        Self { cfg, store }
    }

    async fn window(&self, principal: &str) -> Result<Window<'_>, ServiceError> {
        validate_principal(principal)?;
        let assigned = self.store.get(&format!("quota:plan:{principal}")).await?;
        // A plan removed from config since it was assigned falls back to the default.
        let (plan_name, plan) = assigned
            .and_then(|name| self.cfg.plans.get_key_value(&name))
            .or_else(|| self.cfg.plans.get_key_value(&self.cfg.default_plan))
            .ok_or_else(|| ServiceError::internal("default plan missing from config"))?;
        let width = plan.window.as_secs().max(1) as i64;
        let now = unix_now();
        let index = now / width;
        Ok(Window {
            plan_name: plan_name.clone(),
            plan,
            key: format!("quota:count:{principal}:{width}:{index}"),
            reset_at: (index + 1) * width,
        })
    }

    fn status(principal: &str, window: &Window<'_>, used: i64, allowed: bool) -> QuotaStatus {
        let used = used.max(0) as u64;
        QuotaStatus {
            principal: principal.to_owned(),
            plan: window.plan_name.clone(),
            limit: window.plan.limit,
            used,
            remaining: window.plan.limit.saturating_sub(used),
            reset_at: window.reset_at,
            allowed,
            window_seconds: window.plan.window.as_secs(),
        }
    }

    async fn consume(&self, req: ConsumeRequest) -> Result<QuotaStatus, ServiceError> {
        let cost = if req.cost == 0 { 1 } else { req.cost };
        if cost > MAX_COST {
            return Err(ServiceError::invalid(format!("cost: at most {MAX_COST}")));
        }
        let window = self.window(&req.principal).await?;
        // The counter lives a little past its window so a late reader still sees it.
        let ttl = Duration::from_secs((window.reset_at - unix_now()).max(1) as u64 + 5);
        let limit = i64::try_from(window.plan.limit).unwrap_or(i64::MAX);
        let outcome = self.store.add_bounded(&window.key, i64::from(cost), 0, limit, Some(ttl)).await?;
        let status = match outcome {
            Bounded::Applied(used) => Self::status(&req.principal, &window, used, true),
            Bounded::Refused(used) => Self::status(&req.principal, &window, used, false),
        };
        if !status.allowed {
            tracing::debug!(principal = %req.principal, used = status.used, "quota spent");
        }
        Ok(status)
    }

    /// Counts as many of `want` requests as still fit, in one atomic step per try: a try that
    /// loses a race with another caller learns what is left and asks for that.
    async fn lease(&self, req: LeaseRequest) -> Result<LeaseGrant, ServiceError> {
        if req.want == 0 || req.want > MAX_COST {
            return Err(ServiceError::invalid(format!("want: between 1 and {MAX_COST}")));
        }
        let window = self.window(&req.principal).await?;
        let ttl = Duration::from_secs((window.reset_at - unix_now()).max(1) as u64 + 5);
        let limit = i64::try_from(window.plan.limit).unwrap_or(i64::MAX);
        let mut ask = i64::from(req.want);
        for _ in 0..LEASE_TRIES {
            match self.store.add_bounded(&window.key, ask, 0, limit, Some(ttl)).await? {
                Bounded::Applied(used) => {
                    let status = Self::status(&req.principal, &window, used, true);
                    return Ok(LeaseGrant { granted: ask as u32, status: Some(status) });
                }
                Bounded::Refused(used) if used >= limit => {
                    let status = Self::status(&req.principal, &window, used, false);
                    return Ok(LeaseGrant { granted: 0, status: Some(status) });
                }
                Bounded::Refused(used) => ask = ask.min(limit - used),
            }
        }
        // Every try lost a race: answer "nothing this time" rather than loop; the caller asks
        // again with its next request.
        let used = self.used(&window).await?;
        Ok(LeaseGrant { granted: 0, status: Some(Self::status(&req.principal, &window, used, false)) })
    }

    /// Uncounts what a lease did not use, in the window it was leased in only.
    async fn release(&self, req: ReleaseRequest) -> Result<QuotaStatus, ServiceError> {
        if req.count == 0 || req.count > MAX_COST {
            return Err(ServiceError::invalid(format!("count: between 1 and {MAX_COST}")));
        }
        let window = self.window(&req.principal).await?;
        if window.reset_at != req.reset_at {
            let used = self.used(&window).await?;
            return Ok(Self::status(&req.principal, &window, used, true));
        }
        let limit = i64::try_from(window.plan.limit).unwrap_or(i64::MAX);
        let used = match self.store.add_bounded(&window.key, -i64::from(req.count), 0, limit, None).await? {
            Bounded::Applied(used) | Bounded::Refused(used) => used,
        };
        Ok(Self::status(&req.principal, &window, used, true))
    }

    async fn used(&self, window: &Window<'_>) -> Result<i64, ServiceError> {
        match self.store.get(&window.key).await? {
            Some(raw) => raw.parse::<i64>().map_err(ServiceError::internal),
            None => Ok(0),
        }
    }

    async fn get(&self, req: GetQuotaRequest) -> Result<QuotaStatus, ServiceError> {
        let window = self.window(&req.principal).await?;
        let used = self.used(&window).await?;
        Ok(Self::status(&req.principal, &window, used, true))
    }

    async fn set_plan(&self, req: SetPlanRequest) -> Result<QuotaStatus, ServiceError> {
        validate_principal(&req.principal)?;
        if !self.cfg.plans.contains_key(&req.plan) {
            let known: Vec<&str> = self.cfg.plans.keys().map(String::as_str).collect();
            return Err(ServiceError::invalid(format!(
                "plan: unknown plan {:?}, expected one of {known:?}",
                req.plan
            )));
        }
        self.store.set(&format!("quota:plan:{}", req.principal), &req.plan, None).await?;
        self.get(GetQuotaRequest { principal: req.principal }).await
    }
}

#[tonic::async_trait]
impl QuotaService for QuotaApi {
    async fn consume(&self, request: Request<ConsumeRequest>) -> Result<Response<QuotaStatus>, Status> {
        Ok(Response::new(QuotaApi::consume(self, request.into_inner()).await?))
    }

    async fn get_quota(&self, request: Request<GetQuotaRequest>) -> Result<Response<QuotaStatus>, Status> {
        Ok(Response::new(self.get(request.into_inner()).await?))
    }

    async fn set_plan(&self, request: Request<SetPlanRequest>) -> Result<Response<QuotaStatus>, Status> {
        Ok(Response::new(QuotaApi::set_plan(self, request.into_inner()).await?))
    }

    async fn lease(&self, request: Request<LeaseRequest>) -> Result<Response<LeaseGrant>, Status> {
        Ok(Response::new(QuotaApi::lease(self, request.into_inner()).await?))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<QuotaStatus>, Status> {
        Ok(Response::new(QuotaApi::release(self, request.into_inner()).await?))
    }
}
