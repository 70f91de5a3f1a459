//! `grpc.health.v1` for every service, with one status per server that drains.
//!
//! tonic-health's service keeps `Watch` streams open for as long as the server lives, and a
//! graceful shutdown waits for open streams: every client watching health (as our balancers
//! do) would hold a draining server until its drain timeout. Here a watch ends right after it
//! reports NOT_SERVING, which a server only reports when it drains, so watchers never hold one.
//! The rest (a status for the server and for each named service) is what tonic-health does.

use std::pin::Pin;

use futures_util::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Sets the status that [`HealthService`] reports.
#[derive(Clone, Debug)]
pub struct HealthReporter {
    status: watch::Sender<ServingStatus>,
}

impl HealthReporter {
    /// Reports NOT_SERVING from now on, and ends every watch.
    pub fn set_not_serving(&self) {
        self.status.send_replace(ServingStatus::NotServing);
    }
}

/// The health service of one server: `""` and each of `names` share the server's status.
#[derive(Debug)]
pub struct HealthService {
    names: Vec<&'static str>,
    status: watch::Receiver<ServingStatus>,
}

/// A SERVING health service for `names`, and the reporter that drains it.
pub fn health_service(names: &[&'static str]) -> (HealthReporter, HealthServer<HealthService>) {
    let (tx, rx) = watch::channel(ServingStatus::Serving);
    (HealthReporter { status: tx }, HealthServer::new(HealthService { names: names.to_vec(), status: rx }))
}

impl HealthService {
    fn knows(&self, service: &str) -> bool {
        service.is_empty() || self.names.contains(&service)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = request.into_inner().service;
        if !self.knows(&service) {
            return Err(Status::not_found(format!("unknown service {service:?}")));
        }
        Ok(Response::new(HealthCheckResponse { status: *self.status.borrow() as i32 }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        if !self.knows(&service) {
            // The protocol answers SERVICE_UNKNOWN on the stream rather than failing the call.
            let unknown = HealthCheckResponse { status: ServingStatus::ServiceUnknown as i32 };
            return Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(unknown)]))));
        }
        let stream = futures_util::stream::unfold(
            (self.status.clone(), true, false),
            |(mut rx, first, done)| async move {
                if done || (!first && rx.changed().await.is_err()) {
                    return None;
                }
                let status = *rx.borrow_and_update();
                let done = status == ServingStatus::NotServing;
                Some((Ok(HealthCheckResponse { status: status as i32 }), (rx, false, done)))
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }
}
