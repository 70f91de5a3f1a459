//! One failure model: for every failure, which side failed, whether it timed out, and where it
//! may be tried again.
//!
//! Every decision that turns on a failure reads a [`Fault`] and nothing else: the circuit
//! breaker (is this the service's health?), the gRPC retry (may another replica take it?), the
//! gateways' fallback (is this an outage?), the error → problem table (whose fault is a 5xx?)
//! and the router's retry and ejection (may another gateway take it, and does it count against
//! this one?). pingora's `Error { etype, esource, retry }` is the model: a failure carries its
//! side and its retry verdict from where it is built, so no caller re-derives them.
//!
//! A fault is built once, where the failure is seen: [`Fault::from_status`] (a gRPC status),
//! [`Fault::from_call_error`] (a gRPC client's transport error: the cause chain is walked, so a
//! timeout is a timeout), [`Fault::from_store`], and for the router [`Fault::from_answer`] and
//! [`Fault::from_attempt`].

use std::error::Error as StdError;

use crate::store::StoreError;

/// Who failed, seen from the component that holds the fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client: a bad, slow, broken or abandoned request. Never anyone's health.
    Client,
    /// This component itself.
    Local,
    /// What this component called: a service (for a gateway), a gateway (for the router).
    Upstream,
    /// A failure the upstream passed on from a service behind it (`x-mesh-fault: service`):
    /// the upstream is well, and every other upstream calls the same service.
    Behind,
    /// The store (Redis).
    Store,
}

/// Where the same request may be sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Nowhere,
    /// Another replica of the same service (a gateway's gRPC retry).
    AnotherReplica,
    /// Another gateway instance (the router's failover).
    AnotherGateway,
}

/// One failure, classified once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub side: Side,
    pub timed_out: bool,
    /// The upstream refused for lack of capacity (RESOURCE_EXHAUSTED): an outage for the
    /// caller, but a bound the service keeps on purpose, not a sign of ill health.
    pub overloaded: bool,
    pub retry: Retry,
}

impl Fault {
    const fn new(side: Side, retry: Retry) -> Self {
        Self { side, timed_out: false, overloaded: false, retry }
    }

    const fn timeout(side: Side) -> Self {
        Self { side, timed_out: true, overloaded: false, retry: Retry::Nowhere }
    }

    /// The fault a gRPC status stands for; `None` for OK.
    pub fn from_status(status: &tonic::Status) -> Option<Self> {
        Self::from_code(status.code())
    }

    /// The fault of a gRPC code; `None` for OK.
    pub fn from_code(code: tonic::Code) -> Option<Self> {
        use tonic::Code;
        Some(match code {
            Code::Ok => return None,
            // Answers about the request: the client's to fix.
            Code::InvalidArgument
            | Code::OutOfRange
            | Code::NotFound
            | Code::AlreadyExists
            | Code::Aborted
            | Code::FailedPrecondition
            | Code::PermissionDenied
            | Code::Unauthenticated => Self::new(Side::Client, Retry::Nowhere),
            // Down, draining, breaker open, no replica: another replica may answer.
            Code::Unavailable => Self::new(Side::Upstream, Retry::AnotherReplica),
            Code::ResourceExhausted => {
                Self { overloaded: true, ..Self::new(Side::Upstream, Retry::AnotherReplica) }
            }
            // A deadline spent: another try would only spend more of a budget already gone.
            Code::DeadlineExceeded | Code::Cancelled => Self::timeout(Side::Upstream),
            // The service erred on this request; trying it again elsewhere repeats the error.
            Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented => {
                Self::new(Side::Upstream, Retry::Nowhere)
            }
        })
    }

    /// The fault of a gRPC client's error (the transport, or a layer under the client): the
    /// cause chain is walked, so tonic's own deadline (`TimeoutExpired`), tower's `Elapsed` and
    /// an I/O timeout are timeouts, and a status found inside is classified as a status.
    /// Anything else (connection refused or reset, a broken stream) is the upstream's, and
    /// another replica may take the call.
    pub fn from_call_error(error: &(dyn StdError + 'static)) -> Self {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if e.is::<tonic::TimeoutExpired>() || e.is::<tower::timeout::error::Elapsed>() {
                return Self::timeout(Side::Upstream);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::TimedOut
            {
                return Self::timeout(Side::Upstream);
            }
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                return Self::from_status(status).unwrap_or(Self::new(Side::Upstream, Retry::AnotherReplica));
            }
            cause = e.source();
        }
        Self::new(Side::Upstream, Retry::AnotherReplica)
    }

    /// The fault of a store operation. Never retried elsewhere: every replica shares the store.
    pub fn from_store(error: &StoreError) -> Self {
        match error {
            StoreError::Unavailable(message) => {
                Self { timed_out: message.contains("timed out"), ..Self::new(Side::Store, Retry::Nowhere) }
            }
            StoreError::Corrupt(_) => Self::new(Side::Store, Retry::Nowhere),
        }
    }

    /// The router's view of a gateway's answer: `None` when it is no failure of anyone's.
    /// `relayed`: the gateway marked it `x-mesh-fault: service`. `request_complete`: the client
    /// had sent its whole body when the answer came.
    pub fn from_answer(status: u16, relayed: bool, request_complete: bool) -> Option<Self> {
        if status < 500 {
            return None;
        }
        Some(if relayed {
            Self { timed_out: status == 504, ..Self::new(Side::Behind, Retry::Nowhere) }
        } else if !request_complete {
            // The gateway may well have been waiting on the client.
            Self::new(Side::Client, Retry::Nowhere)
        } else if matches!(status, 502 | 503) {
            Self::new(Side::Upstream, Retry::AnotherGateway)
        } else {
            Self { timed_out: status == 504, ..Self::new(Side::Upstream, Retry::Nowhere) }
        })
    }

    /// The router's view of an attempt that got no answer. `connect`: nothing reached the
    /// gateway. `client_caused`: the client's body failed. `request_complete` as above.
    pub fn from_attempt(connect: bool, timed_out: bool, client_caused: bool, request_complete: bool) -> Self {
        if client_caused || (!connect && !request_complete) {
            return Self { timed_out, ..Self::new(Side::Client, Retry::Nowhere) };
        }
        Self { timed_out, ..Self::new(Side::Upstream, Retry::AnotherGateway) }
    }

    /// Whether the fault tells about the health of what was called (the breaker of a service,
    /// the passive health of a gateway instance): the upstream's own failure, not a bound it
    /// keeps on purpose.
    pub fn counts_against_upstream(&self) -> bool {
        self.side == Side::Upstream && !self.overloaded
    }

    /// Whether the caller should answer from a fallback: the upstream, or something behind it,
    /// failed or could not take the request, rather than answering about it.
    pub fn is_outage(&self) -> bool {
        matches!(self.side, Side::Upstream | Side::Behind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const UPSTREAM: Side = Side::Upstream;

    /// (status, relayed, request complete) and the side and retry verdict wanted.
    type AnswerCase = (u16, bool, bool, Option<(Side, Retry)>);

    #[test]
    fn every_grpc_code_has_one_side_and_one_retry_verdict() {
        let table: &[(Code, Side, bool, Retry)] = &[
            (Code::InvalidArgument, Side::Client, false, Retry::Nowhere),
            (Code::OutOfRange, Side::Client, false, Retry::Nowhere),
            (Code::NotFound, Side::Client, false, Retry::Nowhere),
            (Code::AlreadyExists, Side::Client, false, Retry::Nowhere),
            (Code::Aborted, Side::Client, false, Retry::Nowhere),
            (Code::FailedPrecondition, Side::Client, false, Retry::Nowhere),
            (Code::PermissionDenied, Side::Client, false, Retry::Nowhere),
            (Code::Unauthenticated, Side::Client, false, Retry::Nowhere),
            (Code::Unavailable, UPSTREAM, false, Retry::AnotherReplica),
            (Code::ResourceExhausted, UPSTREAM, false, Retry::AnotherReplica),
            (Code::DeadlineExceeded, UPSTREAM, true, Retry::Nowhere),
            (Code::Cancelled, UPSTREAM, true, Retry::Nowhere),
            (Code::Internal, UPSTREAM, false, Retry::Nowhere),
            (Code::Unknown, UPSTREAM, false, Retry::Nowhere),
            (Code::DataLoss, UPSTREAM, false, Retry::Nowhere),
            (Code::Unimplemented, UPSTREAM, false, Retry::Nowhere),
        ];
        for &(code, side, timed_out, retry) in table {
            let fault = Fault::from_code(code).unwrap();
            assert_eq!((fault.side, fault.timed_out, fault.retry), (side, timed_out, retry), "{code:?}");
        }
        assert_eq!(Fault::from_code(Code::Ok), None);
        let exhausted = Fault::from_code(Code::ResourceExhausted).unwrap();
        assert!(exhausted.is_outage() && !exhausted.counts_against_upstream(), "a bound kept on purpose");
        let internal = Fault::from_code(Code::Internal).unwrap();
        assert!(internal.is_outage() && internal.counts_against_upstream());
        assert!(!Fault::from_code(Code::NotFound).unwrap().is_outage());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] Box<dyn StdError + Send + Sync>);

    #[test]
    fn a_call_error_is_classified_by_its_cause_chain() {
        let timeout = Wrapped(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(Fault::from_call_error(&timeout), Fault::timeout(UPSTREAM), "tonic's deadline");
        let elapsed = Wrapped(Box::new(tower::timeout::error::Elapsed::new()));
        assert!(Fault::from_call_error(&elapsed).timed_out, "tower's timeout");
        let io = Wrapped(Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)));
        assert!(Fault::from_call_error(&io).timed_out, "an I/O timeout");
        let refused = Wrapped(Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
        assert_eq!(
            Fault::from_call_error(&refused).retry,
            Retry::AnotherReplica,
            "another replica may answer"
        );
        let status = Wrapped(Box::new(tonic::Status::invalid_argument("no")));
        assert_eq!(Fault::from_call_error(&status).side, Side::Client, "a status inside is a status");
    }

    #[test]
    fn store_faults_are_the_stores_and_never_retried_elsewhere() {
        let timeout = Fault::from_store(&StoreError::Unavailable("timed out after 250ms".into()));
        assert_eq!((timeout.side, timeout.timed_out, timeout.retry), (Side::Store, true, Retry::Nowhere));
        assert!(!timeout.is_outage() && !timeout.counts_against_upstream());
        assert!(!Fault::from_store(&StoreError::Corrupt("x".into())).timed_out);
    }

    #[test]
    fn the_routers_view_of_answers_and_attempts() {
        // (status, relayed, request complete) → fault
        let answers: &[AnswerCase] = &[
            (200, false, true, None),
            (404, false, true, None),
            (503, true, true, Some((Side::Behind, Retry::Nowhere))),
            (500, true, true, Some((Side::Behind, Retry::Nowhere))),
            (504, false, false, Some((Side::Client, Retry::Nowhere))),
            (503, false, true, Some((UPSTREAM, Retry::AnotherGateway))),
            (502, false, true, Some((UPSTREAM, Retry::AnotherGateway))),
            (500, false, true, Some((UPSTREAM, Retry::Nowhere))),
        ];
        for &(status, relayed, complete, want) in answers {
            let got = Fault::from_answer(status, relayed, complete).map(|f| (f.side, f.retry));
            assert_eq!(got, want, "{status} relayed={relayed} complete={complete}");
        }
        assert!(!Fault::from_answer(503, true, true).unwrap().counts_against_upstream(), "a service's fault");
        assert!(Fault::from_answer(503, true, true).unwrap().is_outage());
        // (connect, timed out, client caused, complete) → fault
        assert_eq!(
            Fault::from_attempt(true, false, false, false).retry,
            Retry::AnotherGateway,
            "nothing was sent"
        );
        assert_eq!(Fault::from_attempt(false, false, true, true).side, Side::Client);
        assert_eq!(
            Fault::from_attempt(false, true, false, false).side,
            Side::Client,
            "waiting on the client"
        );
        let hung = Fault::from_attempt(false, true, false, true);
        assert!(hung.timed_out && hung.counts_against_upstream() && hung.retry == Retry::AnotherGateway);
    }
}
