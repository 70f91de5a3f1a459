//! Every error a client can see, as RFC 9457 `application/problem+json`.
//!
//! Handlers return [`ApiError`]. Its `IntoResponse` only sets the status and attaches the
//! [`Problem`] as a response extension; the outermost middleware ([`crate::context`]) renders it
//! with the request id as `instance`, and also turns bare error responses from layers (405, 413,
//! …) into problems. So there is one renderer and no error body without a request id.
//!
//! [`ApiError::from_status`] is the one table from gRPC codes to HTTP statuses.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mesh_core::fault::{Fault, Side};

pub use mesh_core::headers::MESH_FAULT;

/// What the problem body says besides status and instance.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Short slug; the body's `type` is `/problems/<slug>`.
    pub slug: &'static str,
    pub title: &'static str,
    pub detail: String,
}

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub problem: Problem,
    /// Seconds, sent as `Retry-After` (429 and 503 always carry one).
    pub retry_after: Option<u64>,
    /// Extra headers, e.g. `WWW-Authenticate` or rate limit headers.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        let retry_after =
            matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE).then_some(1);
        Self {
            status,
            problem: Problem { slug, title, detail: detail.into() },
            retry_after,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", "The request is invalid", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", "The request body is invalid", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication is required", detail)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Marks the error as a service's fault, not this gateway's (`x-mesh-fault: service`): the
    /// router then does not count it against this gateway instance's health.
    pub fn service_fault(self) -> Self {
        self.with_header(header::HeaderName::from_static(MESH_FAULT), HeaderValue::from_static("service"))
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The one mapping from a service's gRPC status to what the client sees. Client-side
    /// codes keep the service's message (written for clients); server-side ones are logged and
    /// answered with a generic text. Whose fault it is comes from [`Fault`]: every 5xx a
    /// service caused carries `x-mesh-fault: service`, so the router neither counts it against
    /// this gateway nor retries it on another gateway (which calls the same service).
    pub fn from_status(service: &'static str, status: &tonic::Status) -> Self {
        use tonic::Code;
        let message = status.message().to_owned();
        let error = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => Self::bad_request(message),
            Code::NotFound => Self::not_found(message),
            Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => {
                Self::new(StatusCode::CONFLICT, "conflict", "Conflict", message)
            }
            Code::PermissionDenied => Self::forbidden(message),
            Code::Unauthenticated => Self::unauthorized(message),
            // A service at a bound it keeps (e.g. auth's password-hashing slots): the service's
            // capacity, not this client's rate, so 503 to retry shortly. (Client rate limits
            // are decided here, at the edge, and answered 429.)
            Code::ResourceExhausted => {
                tracing::info!(service, status = %message, "service at capacity");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded",
                    "Service overloaded",
                    format!("the {service} service is at capacity, try again shortly"),
                )
            }
            Code::Unavailable => {
                tracing::warn!(service, status = %message, "service unavailable");
                Self::unavailable(format!("the {service} service is unavailable, try again shortly"))
            }
            // A server-side timeout reaches us as CANCELLED (tonic) or DEADLINE_EXCEEDED.
            Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(service, status = %message, "service deadline exceeded");
                Self::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "Upstream timeout",
                    format!("the {service} service did not answer in time"),
                )
            }
            code => {
                tracing::error!(service, ?code, status = %message, "service error");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "internal error")
            }
        };
        let service_caused = Fault::from_status(status).is_some_and(|f| f.side == Side::Upstream);
        if service_caused && error.status.is_server_error() { error.service_fault() } else { error }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response.extensions_mut().insert(self.problem);
        response
    }
}

/// The problem a bare error status stands for, when a layer answered without a body.
pub fn problem_for_status(status: StatusCode) -> Problem {
    let (slug, title, detail) = match status {
        StatusCode::NOT_FOUND => ("not-found", "Not found", "no route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("method-not-allowed", "Method not allowed", "this path does not accept this method")
        }
        StatusCode::PAYLOAD_TOO_LARGE => {
            ("body-too-large", "Request body too large", "the request body exceeds the size limit")
        }
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("unsupported-media-type", "Unsupported media type", "send `Content-Type: application/json`")
        }
        StatusCode::REQUEST_TIMEOUT => ("timeout", "Request timeout", "the request took too long"),
        s if s.is_client_error() => {
            ("bad-request", "The request is invalid", "the request could not be processed")
        }
        _ => ("internal", "Internal error", "internal error"),
    };
    Problem { slug, title, detail: detail.into() }
}

/// The JSON body of a problem.
pub fn problem_body(status: StatusCode, problem: &Problem, request_id: &str) -> serde_json::Value {
    mesh_core::problem::body(status.as_u16(), problem.slug, problem.title, &problem.detail, request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn the_status_table_maps_every_code() {
        let cases = [
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 503),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Cancelled, 504),
            (Code::AlreadyExists, 409),
            (Code::FailedPrecondition, 409),
            (Code::Aborted, 409),
            (Code::Internal, 500),
            (Code::Unknown, 500),
            (Code::DataLoss, 500),
            (Code::Unimplemented, 500),
        ];
        for (code, http) in cases {
            let err = ApiError::from_status("orders", &tonic::Status::new(code, "at 10.1.2.3:50054 boom"));
            assert_eq!(err.status.as_u16(), http, "{code:?}");
            let marked = err.headers.iter().any(|(name, value)| name == MESH_FAULT && value == "service");
            assert_eq!(marked, http >= 500, "{code:?}: every service-caused 5xx, and only those, is marked");
            if http >= 500 {
                assert!(!err.problem.detail.contains("10.1.2.3"), "{code:?} leaks: {}", err.problem.detail);
            }
        }
        assert_eq!(
            ApiError::from_status("x", &tonic::Status::invalid_argument("email: empty")).problem.detail,
            "email: empty"
        );
    }

    #[test]
    fn throttling_and_outages_carry_retry_after() {
        assert!(ApiError::from_status("x", &tonic::Status::unavailable("")).retry_after.is_some());
        assert!(ApiError::from_status("x", &tonic::Status::resource_exhausted("")).retry_after.is_some());
        assert!(ApiError::bad_request("x").retry_after.is_none());
    }
}
