//! The daemon's error type, and how internal failures become wire errors.

use drover_proto::{ErrorBody, ErrorCode};
use drover_store::StoreError;
use drover_supervisor::SupervisorError;

/// Failures starting or running the daemon itself (not per-request errors).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error("invalid configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// An I/O operation failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A socket could not be bound.
    #[error("cannot bind {endpoint}: {reason}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// A key file could not be read or written, or a key is malformed.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The store failed to open or to answer.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// A store failure as a wire error.
pub(crate) fn store_error(error: StoreError) -> ErrorBody {
    match &error {
        StoreError::NotFound(_) => ErrorBody::new(ErrorCode::NotFound, error.to_string()),
        StoreError::Ambiguous { .. } => ErrorBody::new(ErrorCode::NotFound, error.to_string()),
        StoreError::NameTaken(_) => ErrorBody::new(ErrorCode::InvalidState, error.to_string()),
        _ => {
            tracing::error!(error = %error, "store failure");
            ErrorBody::new(ErrorCode::Internal, error.to_string())
        }
    }
}

/// A supervisor failure as a wire error.
pub(crate) fn supervisor_error(error: SupervisorError) -> ErrorBody {
    let code = match &error {
        SupervisorError::InvalidState { .. } => ErrorCode::InvalidState,
        SupervisorError::StdinFull => ErrorCode::StdinFull,
        SupervisorError::StdinClosed => ErrorCode::StdinClosed,
        SupervisorError::InvalidSignal(_) => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    ErrorBody::new(code, error.to_string())
}
