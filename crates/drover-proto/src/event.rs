//! Lifecycle events and heartbeats, as published on `evt.<agent_id>` and `hb`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Activity, AgentId, AgentState, DaemonId, EventSeq, Seq};

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
    /// Records the daemon could not store (a full disk when the agent ended) are lost for
    /// good; `dropped` names the range. Reads and follows of the log report the same range.
    LogDropped,
    /// What the agent is doing changed: its phase, its attention or its final result
    /// (`activity` carries the whole activity; not sent per token).
    Activity,
    /// The restart policy started the agent's next run (`run` says which; its records go on
    /// from the next `seq`).
    Restarted,
    /// A kind this build does not know, from a newer daemon: clients ignore such events (the
    /// version policy lets `kind` gain values). Never sent.
    #[serde(other)]
    Unknown,
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
            EventKind::LogDropped => "log_dropped",
            EventKind::Activity => "activity",
            EventKind::Restarted => "restarted",
            EventKind::Unknown => "unknown",
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
    /// On `log_dropped`: the records lost (absent from every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<SeqRange>,
    /// On `activity`: the agent's activity after the change (absent from every other kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity: Option<Activity>,
    /// The agent's run the event belongs to: 1 for the first, one more for each restart.
    /// Left out of the encoding when 1.
    #[serde(default = "first_run", skip_serializing_if = "is_first_run")]
    pub run: u32,
}

fn first_run() -> u32 {
    1
}

fn is_first_run(run: &u32) -> bool {
    *run == 1
}

/// An inclusive range of record seqs: `from..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqRange {
    /// The first seq of the range.
    pub from: Seq,
    /// The last seq of the range (inclusive).
    pub to: Seq,
}

impl SeqRange {
    /// How many seqs the range holds.
    pub fn len(&self) -> u64 {
        self.to.0.saturating_sub(self.from.0) + 1
    }

    /// Never empty: a range holds at least `from`.
    pub fn is_empty(&self) -> bool {
        false
    }
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
    /// For each live agent that printed since the daemon started, the seq after its last
    /// record published (or dropped on the way) before this heartbeat. A follower whose next
    /// expected seq is below it missed records, even when the agent prints nothing more. At
    /// most [`crate::limits::MAX_HEARTBEAT_LOG_ENDS`] agents a heartbeat, taken in turn past
    /// that; left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub log_ends: BTreeMap<AgentId, Seq>,
}
