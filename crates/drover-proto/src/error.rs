//! The closed set of wire error codes and the crate's own error type.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every error a Drover reply can carry. The set is closed for protocol v1: a client may treat an
/// unknown code as `internal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed: not MessagePack, not a map, a missing or ill-typed field, an
    /// unknown op, an invalid spec.
    BadRequest,
    /// No agent matches the reference (or a prefix matches more than one: see the message).
    NotFound,
    /// The agent's state does not allow the operation (pause an exited agent, remove a live one).
    InvalidState,
    /// A configured maximum would be exceeded (the number of live agents).
    LimitReached,
    /// The request is not allowed: authentication is missing or wrong, or the daemon's
    /// configuration does not let clients use that backend.
    Unauthorized,
    /// The frame or a field is larger than the configured maximum.
    TooLarge,
    /// The envelope's `v` is not a version this daemon speaks.
    UnsupportedVersion,
    /// A `wait` (or a client-side deadline) expired first.
    Timeout,
    /// The agent's stdin queue is full: it is not reading its input.
    StdinFull,
    /// The agent's stdin is closed or was never a pipe.
    StdinClosed,
    /// Something failed inside the daemon; the message says what. A code this version does not
    /// know (from a newer daemon) decodes as `internal`.
    #[serde(other)]
    Internal,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 11] = [
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::InvalidState,
        ErrorCode::LimitReached,
        ErrorCode::Unauthorized,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::Timeout,
        ErrorCode::StdinFull,
        ErrorCode::StdinClosed,
        ErrorCode::Internal,
    ];

    /// The code's wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidState => "invalid_state",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::Timeout => "timeout",
            ErrorCode::StdinFull => "stdin_full",
            ErrorCode::StdinClosed => "stdin_closed",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code for a wire string; unknown strings map to `internal`.
    pub fn from_wire(s: &str) -> ErrorCode {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .unwrap_or(ErrorCode::Internal)
    }

    /// The `drover` CLI's exit status for this code (the table in `docs/PROTOCOL.md`).
    /// 0 is success and 1 a local failure (cannot connect, bad flags), so codes start at 2.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorCode::BadRequest => 2,
            ErrorCode::NotFound => 3,
            ErrorCode::InvalidState => 4,
            ErrorCode::LimitReached => 5,
            ErrorCode::Unauthorized => 6,
            ErrorCode::TooLarge => 7,
            ErrorCode::UnsupportedVersion => 8,
            ErrorCode::Timeout => 9,
            ErrorCode::StdinFull => 10,
            ErrorCode::StdinClosed => 11,
            ErrorCode::Internal => 12,
        }
    }

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::InvalidState => 409,
            ErrorCode::LimitReached => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedVersion => 400,
            // Not 408: clients and proxies may retry a 408 on their own, even a POST.
            ErrorCode::Timeout => 504,
            ErrorCode::StdinFull => 503,
            ErrorCode::StdinClosed => 409,
            ErrorCode::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` map of a failed reply: `{"code": "...", "message": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What kind of failure.
    pub code: ErrorCode,
    /// A human-readable sentence; never needed to decide what to do.
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// An error with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ErrorBody {}

/// Failures while encoding or decoding protocol messages.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// The frame exceeds the size limit; it was not decoded.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused frame.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The bytes are not a valid MessagePack value of the expected shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The envelope's `v` is not 1.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(String),
    /// The envelope names no op, or one this version does not know.
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    /// A field of the request is missing or has the wrong type.
    #[error("invalid arguments for {op}: {reason}")]
    InvalidArguments {
        /// The op whose arguments were refused.
        op: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// Encoding failed (a bug: every protocol type is encodable).
    #[error("encoding failed: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

impl ProtoError {
    /// The wire code a daemon replies with for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::TooLarge { .. } => ErrorCode::TooLarge,
            ProtoError::Malformed(_)
            | ProtoError::UnknownOp(_)
            | ProtoError::InvalidArguments { .. } => ErrorCode::BadRequest,
            ProtoError::UnsupportedVersion(_) => ErrorCode::UnsupportedVersion,
            ProtoError::Encode(_) => ErrorCode::Internal,
        }
    }

    /// This failure as a wire error body.
    pub fn to_body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.to_string())
    }
}
