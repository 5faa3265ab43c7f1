//! Lifecycle events and heartbeats, as published on `evt.<agent_id>` and `hb`.

use serde::{Deserialize, Serialize};

use crate::{AgentId, AgentState, DaemonId, EventSeq};

/// What happened to an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The agent was created (its first event).
    Spawned,
    /// The agent's state changed (`state` says to what).
    State,
    /// The agent's process was reaped (`exit_code` or `signal` says how).
    Exit,
    /// The daemon found the agent's process gone after a restart.
    Lost,
    /// The agent and its logs were removed.
    Removed,
}

impl EventKind {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Spawned => "spawned",
            EventKind::State => "state",
            EventKind::Exit => "exit",
            EventKind::Lost => "lost",
            EventKind::Removed => "removed",
        }
    }
}

/// One lifecycle event. `event_seq` numbers events daemon-wide, so a follower can resume and
/// detect gaps across all agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Daemon-wide event number.
    pub event_seq: EventSeq,
    /// When it happened, unix nanoseconds.
    pub ts: i64,
    /// Which agent.
    pub agent: AgentId,
    /// What happened.
    pub kind: EventKind,
    /// The agent's state after the event.
    pub state: AgentState,
    /// The exit code, on `exit` of a process that exited normally.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal number, on `exit` of a process killed by a signal.
    #[serde(default)]
    pub signal: Option<i32>,
}

/// The daemon's heartbeat on `hb`, once a second.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The daemon run; a new value means the daemon restarted.
    pub daemon: DaemonId,
    /// When it was sent, unix nanoseconds.
    pub ts: i64,
    /// The latest event number published; a follower behind it missed events.
    pub event_seq: EventSeq,
}
