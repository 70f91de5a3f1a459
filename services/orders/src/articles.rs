//! The articles service as orders uses it: one call, `ReserveStock`, with its failures mapped to
//! what the caller of orders can act on.

use std::time::Duration;

use mesh_core::ServiceError;
use mesh_core::client::ServiceChannel as Channel;
use mesh_proto::articles::articles_service_client::ArticlesServiceClient;
use mesh_proto::articles::{ReserveStockRequest, ReservedLine, StockLine};
use tonic::{Code, Status};

use crate::request::Item;

/// Attempts of one reservation while articles answers ABORTED (another call holds the same
/// reservation id, e.g. a concurrent request with the same Idempotency-Key). That call finishes
/// within milliseconds, so a short wait lets this one answer the order instead of an error.
const ABORTED_ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The message of every "articles is down" answer: says what to do, never where articles lives.
const UNAVAILABLE: &str = "the articles service is unavailable, try again shortly";

/// A client of the articles service, balanced over its replicas. Cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct Articles {
    client: ArticlesServiceClient<Channel>,
    /// Upper bound on one call. The channel has its own per-request timeout, but a balanced
    /// channel with no replica up waits for one to become ready before that timeout starts; this
    /// bound makes "every replica is down" an answer instead of a hang.
    timeout: Duration,
}

// === impl Articles ===

impl Articles {
    pub(crate) fn new(client: ArticlesServiceClient<Channel>, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// Reserves `items` under `reservation_id`; repeating it is safe (articles answers the same).
    pub(crate) async fn reserve(
        &self,
        reservation_id: &str,
        items: &[Item],
    ) -> Result<Vec<ReservedLine>, ServiceError> {
        let request = ReserveStockRequest {
            reservation_id: reservation_id.to_owned(),
            lines: items
                .iter()
                .map(|i| StockLine { article_id: i.article_id.clone(), quantity: i.quantity })
                .collect(),
        };
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.reserve_once(request.clone()).await {
                Err(ServiceError::Aborted(_)) if attempt < ABORTED_ATTEMPTS => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn reserve_once(&self, request: ReserveStockRequest) -> Result<Vec<ReservedLine>, ServiceError> {
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.reserve_stock(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().lines),
            Ok(Err(status)) => Err(from_status(status)),
            Err(_) => {
                tracing::warn!(timeout = ?self.timeout, "articles did not answer in time");
                Err(ServiceError::Unavailable(UNAVAILABLE.into()))
            }
        }
    }
}

/// What an articles status means to the caller of orders. The answers about the request (stock,
/// existence, arguments) pass through with their message, which articles composes from ids and
/// numbers only; a transport failure becomes UNAVAILABLE with a message of our own, as tonic's
/// can carry addresses.
fn from_status(status: Status) -> ServiceError {
    let message = status.message().to_owned();
    match status.code() {
        Code::FailedPrecondition => ServiceError::FailedPrecondition(message),
        Code::NotFound => ServiceError::NotFound(message),
        Code::InvalidArgument => ServiceError::InvalidArgument(message),
        Code::Aborted => ServiceError::Aborted(message),
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::ResourceExhausted => {
            tracing::warn!(code = ?status.code(), %message, "articles unavailable");
            ServiceError::Unavailable(UNAVAILABLE.into())
        }
        code => ServiceError::internal(format!("articles answered {code:?}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_errors_pass_through_and_transport_errors_hide_their_cause() {
        let refusal = from_status(Status::failed_precondition("article X has only 1 in stock"));
        assert!(matches!(&refusal, ServiceError::FailedPrecondition(m) if m.contains("only 1")));
        assert!(matches!(from_status(Status::not_found("article X not found")), ServiceError::NotFound(_)));
        assert!(matches!(from_status(Status::aborted("in progress")), ServiceError::Aborted(_)));
        for status in [
            Status::unavailable("tcp connect error 10.1.2.3:50055"),
            Status::cancelled("Timeout expired"),
            Status::deadline_exceeded("deadline"),
            Status::unknown("transport error"),
        ] {
            let e = from_status(status);
            assert!(matches!(&e, ServiceError::Unavailable(m) if m == UNAVAILABLE), "{e:?}");
        }
        assert!(matches!(from_status(Status::internal("boom")), ServiceError::Internal(_)));
    }
}
