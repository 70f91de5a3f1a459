//! Domain errors of the services and their single mapping to gRPC status codes.
//!
//! A service returns `Result<T, ServiceError>`; the `From` impl below is the only place a status
//! code is chosen. `Internal` logs its cause and shows the caller nothing of it.

use crate::store::StoreError;

/// What went wrong, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request itself is wrong; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is valid but the state of the system refuses it (e.g. not enough stock).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A concurrent request holds what this one needs; retrying soon will succeed.
    #[error("{0}")]
    Aborted(String),
    /// A dependency (the store, another service) is down; the caller may retry elsewhere or later.
    #[error("{0}")]
    Unavailable(String),
    /// This replica is at a bound it keeps on purpose (e.g. concurrent password hashes) and
    /// refused the call rather than queue it; retry shortly. Unlike `Unavailable` it says nothing
    /// about the replica's health, so breakers do not count it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A bug or an unexpected state. The cause is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "store unavailable");
                Self::Unavailable("storage is unavailable, try again shortly".into())
            }
            StoreError::Corrupt(cause) => Self::Internal(cause),
        }
    }
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        use tonic::Status;
        match e {
            ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
            ServiceError::NotFound(m) => Status::not_found(m),
            ServiceError::AlreadyExists(m) => Status::already_exists(m),
            ServiceError::PermissionDenied(m) => Status::permission_denied(m),
            ServiceError::Unauthenticated(m) => Status::unauthenticated(m),
            ServiceError::FailedPrecondition(m) => Status::failed_precondition(m),
            ServiceError::Aborted(m) => Status::aborted(m),
            ServiceError::Unavailable(m) => Status::unavailable(m),
            ServiceError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ServiceError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn every_error_maps_to_its_code_and_internal_hides_its_cause() {
        let cases = [
            (ServiceError::invalid("email: is empty"), Code::InvalidArgument),
            (ServiceError::not_found("order"), Code::NotFound),
            (ServiceError::AlreadyExists("x".into()), Code::AlreadyExists),
            (ServiceError::PermissionDenied("x".into()), Code::PermissionDenied),
            (ServiceError::Unauthenticated("x".into()), Code::Unauthenticated),
            (ServiceError::FailedPrecondition("x".into()), Code::FailedPrecondition),
            (ServiceError::Aborted("x".into()), Code::Aborted),
            (ServiceError::Unavailable("x".into()), Code::Unavailable),
            (ServiceError::ResourceExhausted("x".into()), Code::ResourceExhausted),
        ];
        for (err, code) in cases {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
        let status = tonic::Status::from(ServiceError::internal("redis://10.0.0.7 said no"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("10.0.0.7"));
    }

    #[test]
    fn store_outage_is_unavailable_without_the_cause() {
        let status = tonic::Status::from(ServiceError::from(StoreError::Unavailable(
            "connection refused 127.0.0.1:6379".into(),
        )));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("6379"));
    }
}
