//! The client's error type.

use std::time::Duration;

use drover_proto::{ErrorBody, ErrorCode, ProtoError};

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The daemon could not be reached.
    #[error("cannot connect to the daemon at {endpoint} (is `drover serve` running?): {reason}")]
    Connect {
        /// The endpoint tried.
        endpoint: String,
        /// Why it failed.
        reason: String,
    },
    /// Nothing accepted a connection at the endpoint within the connect timeout.
    #[error("no daemon at {endpoint} (is `drover serve` running, and is this its address?)")]
    NoDaemon {
        /// The endpoint tried.
        endpoint: String,
    },
    /// The daemon refused our CURVE key at the handshake.
    #[error(
        "the daemon at {endpoint} refused the connection: this key is not allowed by that daemon"
    )]
    Refused {
        /// The endpoint tried.
        endpoint: String,
    },
    /// The handshake failed for another reason (wrong server key, or a key missing).
    #[error("handshake with {endpoint} failed: {reason}")]
    Handshake {
        /// The endpoint tried.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// A key or key file is unusable.
    #[error("CURVE keys: {0}")]
    Keys(String),
    /// No reply came before the deadline; the connection was replaced.
    #[error("no reply to {op} within {after:?}")]
    Timeout {
        /// The op that timed out.
        op: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The daemon replied with an error.
    #[error("{0}")]
    Remote(ErrorBody),
    /// A message could not be encoded or decoded.
    #[error("protocol error: {0}")]
    Proto(#[from] ProtoError),
    /// The connection went away while the request was in flight.
    #[error("connection to the daemon closed: {0}")]
    Disconnected(String),
}

impl ClientError {
    /// No answer came at all (the request's deadline passed, or the connection failed or could
    /// not be made), as opposed to an answer that is an error.
    pub fn is_unanswered(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout { .. }
                | ClientError::Disconnected(_)
                | ClientError::NoDaemon { .. }
                | ClientError::Connect { .. }
        )
    }

    /// The wire error code, for remote errors (and `timeout` for client deadlines, `unauthorized`
    /// for a key the daemon refused at the handshake).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Remote(body) => Some(body.code),
            ClientError::Timeout { .. } => Some(ErrorCode::Timeout),
            ClientError::Proto(e) => Some(e.code()),
            // The daemon's ZAP handler said no to the key: the handshake's `unauthorized`.
            ClientError::Refused { .. } => Some(ErrorCode::Unauthorized),
            ClientError::Connect { .. }
            | ClientError::NoDaemon { .. }
            | ClientError::Handshake { .. }
            | ClientError::Keys(_)
            | ClientError::Disconnected(_) => None,
        }
    }
}
