//! The lifecycle state of one child.

use serde::{Deserialize, Serialize};

/// Where a child is in its life. Each variant carries exactly the data valid in that state, so a
/// `pid` can only be read while there is a process to signal.
///
/// Transitions (driven only by the actor):
/// `Starting -> Running | FailedToStart`, `Running <-> Paused`,
/// `Running | Paused -> Stopping`, and `Running | Paused | Stopping -> Exited | Killed` once the
/// process is reaped and its output delivered, or `-> Lost` when its holder disappears.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Before the process starts. The supervisor starts it before returning a handle, so a
    /// handle is never
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
    /// The holder of the process is gone (killed, or its socket unreachable), so nobody saw
    /// how the process ended. `error` says what was found.
    Lost {
        pid: Option<u32>,
        started_at: Option<i64>,
        ended_at: i64,
        error: String,
    },
}

impl Status {
    /// True once nothing will change any more: the process was reaped (or never started).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Status::Exited { .. }
                | Status::Killed { .. }
                | Status::FailedToStart { .. }
                | Status::Lost { .. }
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
            Status::Lost { .. } => "lost",
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
            Status::Lost { started_at, .. } => *started_at,
            Status::Starting | Status::FailedToStart { .. } => None,
        }
    }

    /// When the process ended (or failed to start).
    pub fn ended_at(&self) -> Option<i64> {
        match self {
            Status::Exited { ended_at, .. }
            | Status::Killed { ended_at, .. }
            | Status::FailedToStart { ended_at, .. }
            | Status::Lost { ended_at, .. } => Some(*ended_at),
            _ => None,
        }
    }
}

/// Unix time in nanoseconds, the one clock used for `ts`, `started_at` and `ended_at`.
pub fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
