//! An agent as clients see it: its spec, its state and the data valid in that state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Activity, AgentId, AgentSpec};

/// The name of an agent's state, as it appears on the wire and in filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Created; the process is being started.
    Starting,
    /// The process runs.
    Running,
    /// The process group is stopped with SIGSTOP.
    Paused,
    /// SIGTERM was sent; SIGKILL follows when the grace ends.
    Stopping,
    /// A run ended and the spec's restart policy starts the next one at `restart_at`.
    Restarting,
    /// The process exited by itself with a code (terminal).
    Exited,
    /// The process was ended by a signal (terminal).
    Killed,
    /// The process could not be started (terminal).
    FailedToStart,
    /// The daemon restarted and the process was gone or no longer its own (terminal).
    Lost,
}

impl AgentState {
    /// Every state, in lifecycle order.
    pub const ALL: [AgentState; 9] = [
        AgentState::Starting,
        AgentState::Running,
        AgentState::Paused,
        AgentState::Stopping,
        AgentState::Restarting,
        AgentState::Exited,
        AgentState::Killed,
        AgentState::FailedToStart,
        AgentState::Lost,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Starting => "starting",
            AgentState::Running => "running",
            AgentState::Paused => "paused",
            AgentState::Stopping => "stopping",
            AgentState::Restarting => "restarting",
            AgentState::Exited => "exited",
            AgentState::Killed => "killed",
            AgentState::FailedToStart => "failed_to_start",
            AgentState::Lost => "lost",
        }
    }

    /// The state for a wire string.
    pub fn parse(s: &str) -> Option<AgentState> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    /// True for states an agent never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            AgentState::Exited | AgentState::Killed | AgentState::FailedToStart | AgentState::Lost
        )
    }
}

/// An agent's state with the data valid in it. Times are unix nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentStatus {
    /// Created; no process yet.
    Starting,
    /// The process runs.
    Running {
        /// Its pid (also its process group id).
        pid: u32,
        /// When it started.
        started_at: i64,
    },
    /// The process group is stopped.
    Paused {
        /// Its pid.
        pid: u32,
        /// When it started.
        started_at: i64,
    },
    /// Stopping with a grace period.
    Stopping {
        /// Its pid.
        pid: u32,
        /// When it started.
        started_at: i64,
    },
    /// A run ended (by itself: an exit code, or a signal nobody asked for) and the restart
    /// policy starts the next one.
    Restarting {
        /// The ended run's exit code, if it exited.
        code: Option<i32>,
        /// The signal that ended it, if one did.
        signal: Option<i32>,
        /// When the ended run started.
        started_at: i64,
        /// When it was reaped.
        ended_at: i64,
        /// When the next run starts.
        restart_at: i64,
    },
    /// Exited by itself.
    Exited {
        /// The exit code.
        code: i32,
        /// When it started.
        started_at: i64,
        /// When it was reaped.
        ended_at: i64,
    },
    /// Ended by a signal.
    Killed {
        /// The signal number.
        signal: i32,
        /// When it started.
        started_at: i64,
        /// When it was reaped.
        ended_at: i64,
    },
    /// Never started.
    FailedToStart {
        /// Why.
        error: String,
        /// When the attempt failed.
        ended_at: i64,
    },
    /// Gone across a daemon restart.
    Lost {
        /// Its last known pid.
        pid: Option<u32>,
        /// When it started, if it had.
        started_at: Option<i64>,
        /// When the daemon noticed.
        ended_at: i64,
        /// What the daemon found: the holder gone, or speaking an incompatible protocol
        /// (then the agent was left running). Absent for agents lost before holders.
        error: Option<String>,
    },
}

impl AgentStatus {
    /// The state's name.
    pub fn state(&self) -> AgentState {
        match self {
            AgentStatus::Starting => AgentState::Starting,
            AgentStatus::Running { .. } => AgentState::Running,
            AgentStatus::Paused { .. } => AgentState::Paused,
            AgentStatus::Stopping { .. } => AgentState::Stopping,
            AgentStatus::Restarting { .. } => AgentState::Restarting,
            AgentStatus::Exited { .. } => AgentState::Exited,
            AgentStatus::Killed { .. } => AgentState::Killed,
            AgentStatus::FailedToStart { .. } => AgentState::FailedToStart,
            AgentStatus::Lost { .. } => AgentState::Lost,
        }
    }

    /// The pid, while the agent has (or last had) a process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            AgentStatus::Running { pid, .. }
            | AgentStatus::Paused { pid, .. }
            | AgentStatus::Stopping { pid, .. } => Some(*pid),
            AgentStatus::Lost { pid, .. } => *pid,
            _ => None,
        }
    }

    /// When the process started, if it did.
    pub fn started_at(&self) -> Option<i64> {
        match self {
            AgentStatus::Running { started_at, .. }
            | AgentStatus::Paused { started_at, .. }
            | AgentStatus::Stopping { started_at, .. }
            | AgentStatus::Restarting { started_at, .. }
            | AgentStatus::Exited { started_at, .. }
            | AgentStatus::Killed { started_at, .. } => Some(*started_at),
            AgentStatus::Lost { started_at, .. } => *started_at,
            AgentStatus::Starting | AgentStatus::FailedToStart { .. } => None,
        }
    }

    /// When the agent reached its terminal state (restarting: when its last run ended).
    pub fn ended_at(&self) -> Option<i64> {
        match self {
            AgentStatus::Restarting { ended_at, .. }
            | AgentStatus::Exited { ended_at, .. }
            | AgentStatus::Killed { ended_at, .. }
            | AgentStatus::FailedToStart { ended_at, .. }
            | AgentStatus::Lost { ended_at, .. } => Some(*ended_at),
            _ => None,
        }
    }

    /// The exit code, once exited (restarting: the last run's, if it exited).
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            AgentStatus::Exited { code, .. } => Some(*code),
            AgentStatus::Restarting { code, .. } => *code,
            _ => None,
        }
    }

    /// The signal, once killed (restarting: the one that ended the last run, if any).
    pub fn signal(&self) -> Option<i32> {
        match self {
            AgentStatus::Killed { signal, .. } => Some(*signal),
            AgentStatus::Restarting { signal, .. } => *signal,
            _ => None,
        }
    }

    /// When the next run starts, while restarting.
    pub fn restart_at(&self) -> Option<i64> {
        match self {
            AgentStatus::Restarting { restart_at, .. } => Some(*restart_at),
            _ => None,
        }
    }

    /// The failure, once failed to start.
    pub fn error(&self) -> Option<&str> {
        match self {
            AgentStatus::FailedToStart { error, .. } => Some(error),
            AgentStatus::Lost { error, .. } => error.as_deref(),
            _ => None,
        }
    }
}

/// One agent, as every reply and the registry carry it. On the wire it is one flat map:
/// `id`, `name`, `backend`, `state`, `pid`, `created_at`, `started_at`, `ended_at`, `exit_code`,
/// `signal`, `error`, `labels`, `spec` (`spec` is left out when it is the default: a `list`
/// that did not ask for specs), `activity` (agents whose backend has a parser), `parent`
/// (agents started by `continue`), `restart_at` (restarting), `restarts` (left out when 0) and
/// `timed_out` (left out when false).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "AgentInfoWire", try_from = "AgentInfoWire")]
pub struct AgentInfo {
    /// The agent's id.
    pub id: AgentId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The backend that rendered its command.
    pub backend: String,
    /// Its state and the data valid in it.
    pub status: AgentStatus,
    /// When it was created, unix nanoseconds.
    pub created_at: i64,
    /// Its labels (a copy of the spec's, for convenience).
    pub labels: BTreeMap<String, String>,
    /// The spec it was spawned from.
    pub spec: AgentSpec,
    /// What the agent is doing, read from its output by its backend's parser; `None` for
    /// backends without one.
    pub activity: Option<Activity>,
    /// How many times its restart policy started it again (its run number is this plus one).
    pub restarts: u32,
    /// Its end was its `timeout_ms` stopping it, not a client or the agent itself.
    pub timed_out: bool,
}

impl AgentInfo {
    /// The state's name.
    pub fn state(&self) -> AgentState {
        self.status.state()
    }

    /// What its runs add to its status.
    pub fn runs(&self) -> Runs {
        Runs {
            restarts: self.restarts,
            timed_out: self.timed_out,
        }
    }

    /// Take what a status change says of its runs.
    pub fn set_runs(&mut self, runs: Runs) {
        self.restarts = runs.restarts;
        self.timed_out = runs.timed_out;
    }
}

/// What an agent's runs add to its status; recorded with each status change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Runs {
    /// Restarts so far (see [`AgentInfo::restarts`]).
    pub restarts: u32,
    /// The end was the agent's timeout (see [`AgentInfo::timed_out`]).
    pub timed_out: bool,
}

/// The flat wire layout of [`AgentInfo`].
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AgentInfoWire {
    id: AgentId,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    backend: String,
    state: AgentState,
    #[serde(default)]
    pid: Option<u32>,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    started_at: Option<i64>,
    #[serde(default)]
    ended_at: Option<i64>,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    /// Absent when the spec was left out (`list` without `specs`); a spawned agent's spec is
    /// never the default one (that renders no command), so nothing is lost by omitting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<AgentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    activity: Option<Activity>,
    /// A copy of `spec.parent`, kept when the spec is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<AgentId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    restart_at: Option<i64>,
    #[serde(default, skip_serializing_if = "is_zero")]
    restarts: u32,
    #[serde(default, skip_serializing_if = "is_false")]
    timed_out: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl From<AgentInfo> for AgentInfoWire {
    fn from(info: AgentInfo) -> Self {
        AgentInfoWire {
            id: info.id,
            name: info.name,
            backend: info.backend,
            state: info.status.state(),
            pid: info.status.pid(),
            created_at: info.created_at,
            started_at: info.status.started_at(),
            ended_at: info.status.ended_at(),
            exit_code: info.status.exit_code(),
            signal: info.status.signal(),
            error: info.status.error().map(str::to_owned),
            restart_at: info.status.restart_at(),
            restarts: info.restarts,
            timed_out: info.timed_out,
            labels: info.labels,
            parent: info.spec.parent,
            spec: (info.spec != AgentSpec::default()).then_some(info.spec),
            activity: info.activity,
        }
    }
}

impl TryFrom<AgentInfoWire> for AgentInfo {
    type Error = String;

    fn try_from(wire: AgentInfoWire) -> Result<Self, Self::Error> {
        let missing = |field: &str| format!("agent in state {} lacks {field}", wire.state.as_str());
        let status = match wire.state {
            AgentState::Starting => AgentStatus::Starting,
            AgentState::Running | AgentState::Paused | AgentState::Stopping => {
                let pid = wire.pid.ok_or_else(|| missing("pid"))?;
                let started_at = wire.started_at.ok_or_else(|| missing("started_at"))?;
                match wire.state {
                    AgentState::Running => AgentStatus::Running { pid, started_at },
                    AgentState::Paused => AgentStatus::Paused { pid, started_at },
                    _ => AgentStatus::Stopping { pid, started_at },
                }
            }
            AgentState::Restarting => AgentStatus::Restarting {
                code: wire.exit_code,
                signal: wire.signal,
                started_at: wire.started_at.ok_or_else(|| missing("started_at"))?,
                ended_at: wire.ended_at.ok_or_else(|| missing("ended_at"))?,
                restart_at: wire.restart_at.ok_or_else(|| missing("restart_at"))?,
            },
            AgentState::Exited => AgentStatus::Exited {
                code: wire.exit_code.ok_or_else(|| missing("exit_code"))?,
                started_at: wire.started_at.ok_or_else(|| missing("started_at"))?,
                ended_at: wire.ended_at.ok_or_else(|| missing("ended_at"))?,
            },
            AgentState::Killed => AgentStatus::Killed {
                signal: wire.signal.ok_or_else(|| missing("signal"))?,
                started_at: wire.started_at.ok_or_else(|| missing("started_at"))?,
                ended_at: wire.ended_at.ok_or_else(|| missing("ended_at"))?,
            },
            AgentState::FailedToStart => AgentStatus::FailedToStart {
                error: wire.error.unwrap_or_default(),
                ended_at: wire.ended_at.ok_or_else(|| missing("ended_at"))?,
            },
            AgentState::Lost => AgentStatus::Lost {
                pid: wire.pid,
                started_at: wire.started_at,
                ended_at: wire.ended_at.ok_or_else(|| missing("ended_at"))?,
                error: wire.error,
            },
        };
        Ok(AgentInfo {
            id: wire.id,
            name: wire.name,
            backend: wire.backend,
            status,
            created_at: wire.created_at,
            labels: wire.labels,
            spec: wire.spec.unwrap_or_default(),
            activity: wire.activity,
            restarts: wire.restarts,
            timed_out: wire.timed_out,
        })
    }
}
