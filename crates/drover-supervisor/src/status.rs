//! The lifecycle state of one child.

use serde::{Deserialize, Serialize};

/// Where a child is in its life. Each variant carries exactly the data valid in that state, so a
/// `pid` can only be read while there is a process to signal.
///
/// Transitions (driven only by the actor):
/// `Starting -> Running | FailedToStart`, `Running <-> Paused`,
/// `Running | Paused -> Stopping`, and `Running | Paused | Stopping -> Exited | Killed` once the
/// process is reaped and its output delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Before `spawn`. [`crate::spawn`] starts the process synchronously, so a handle is never
    /// seen in this state; it exists for callers that list an agent before spawning it.
    Starting,
    Running {
        pid: u32,
        started_at: i64,
    },
    Paused {
        pid: u32,
        started_at: i64,
    },
    Stopping {
        pid: u32,
        started_at: i64,
    },
    Exited {
        code: i32,
        started_at: i64,
        ended_at: i64,
    },
    Killed {
        signal: i32,
        started_at: i64,
        ended_at: i64,
    },
    FailedToStart {
        error: String,
        ended_at: i64,
    },
}

impl Status {
    /// True once nothing will change any more: the process was reaped (or never started).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Exited { .. } | Status::Killed { .. } | Status::FailedToStart { .. }
        )
    }

    /// The process id while a process exists to signal.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Status::Running { pid, .. }
            | Status::Paused { pid, .. }
            | Status::Stopping { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// The wire name of the state (`running`, `failed_to_start`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Running { .. } => "running",
            Status::Paused { .. } => "paused",
            Status::Stopping { .. } => "stopping",
            Status::Exited { .. } => "exited",
            Status::Killed { .. } => "killed",
            Status::FailedToStart { .. } => "failed_to_start",
        }
    }

    /// When the process started, if it did.
    pub fn started_at(&self) -> Option<i64> {
        match self {
            Status::Running { started_at, .. }
            | Status::Paused { started_at, .. }
            | Status::Stopping { started_at, .. }
            | Status::Exited { started_at, .. }
            | Status::Killed { started_at, .. } => Some(*started_at),
            Status::Starting | Status::FailedToStart { .. } => None,
        }
    }

    /// When the process ended (or failed to start).
    pub fn ended_at(&self) -> Option<i64> {
        match self {
            Status::Exited { ended_at, .. }
            | Status::Killed { ended_at, .. }
            | Status::FailedToStart { ended_at, .. } => Some(*ended_at),
            _ => None,
        }
    }
}

/// Unix time in nanoseconds, the one clock used for `ts`, `started_at` and `ended_at`.
pub(crate) fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
