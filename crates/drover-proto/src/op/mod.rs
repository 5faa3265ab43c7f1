//! Every v1 op: its name, its arguments and its result.
//!
//! A request on the wire is one map: the envelope keys `v`, `id`, `op` next to the op's argument
//! fields. A successful reply is one map: `v`, `id`, `ok: true` next to the result fields.

use serde::{Deserialize, Serialize};

mod args;
mod result;

pub use args::*;
pub use result::*;

/// The name of an op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Daemon liveness and summary.
    Health,
    /// Create and start an agent.
    Spawn,
    /// List agents.
    List,
    /// One agent.
    Get,
    /// SIGSTOP the agent's process group.
    Pause,
    /// SIGCONT the agent's process group.
    Resume,
    /// SIGTERM, then SIGKILL after a grace period.
    Stop,
    /// SIGKILL the process group.
    Kill,
    /// Send any signal to the process group.
    Signal,
    /// Queue bytes for the agent's stdin.
    WriteStdin,
    /// Close the agent's stdin after queued bytes are written.
    CloseStdin,
    /// Read stored log records.
    ReadLogs,
    /// Where to subscribe for live streams.
    StreamInfo,
    /// Wait for a terminal state.
    Wait,
    /// Delete a terminal agent and its logs.
    Remove,
    /// Apply one op to many agents.
    Batch,
    /// Daemon counters.
    Stats,
    /// Read stored lifecycle events.
    ReadEvents,
}

impl Op {
    /// Every op, in documentation order.
    pub const ALL: [Op; 18] = [
        Op::Health,
        Op::Spawn,
        Op::List,
        Op::Get,
        Op::Pause,
        Op::Resume,
        Op::Stop,
        Op::Kill,
        Op::Signal,
        Op::WriteStdin,
        Op::CloseStdin,
        Op::ReadLogs,
        Op::StreamInfo,
        Op::Wait,
        Op::Remove,
        Op::Batch,
        Op::Stats,
        Op::ReadEvents,
    ];

    /// The op's wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Health => "health",
            Op::Spawn => "spawn",
            Op::List => "list",
            Op::Get => "get",
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop => "stop",
            Op::Kill => "kill",
            Op::Signal => "signal",
            Op::WriteStdin => "write_stdin",
            Op::CloseStdin => "close_stdin",
            Op::ReadLogs => "read_logs",
            Op::StreamInfo => "stream_info",
            Op::Wait => "wait",
            Op::Remove => "remove",
            Op::Batch => "batch",
            Op::Stats => "stats",
            Op::ReadEvents => "read_events",
        }
    }

    /// The op for a wire string.
    pub fn parse(s: &str) -> Option<Op> {
        Self::ALL.into_iter().find(|op| op.as_str() == s)
    }
}

/// A request: the op and its arguments.
#[derive(Clone, Debug, PartialEq)]
// A request is decoded, handled and dropped one at a time; the spec's size (304 bytes inline)
// costs nothing worth an allocation per spawn to avoid.
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// `health`.
    Health(NoArgs),
    /// `spawn`.
    Spawn(SpawnArgs),
    /// `list`.
    List(ListArgs),
    /// `get`.
    Get(AgentArgs),
    /// `pause`.
    Pause(AgentArgs),
    /// `resume`.
    Resume(AgentArgs),
    /// `stop`.
    Stop(StopArgs),
    /// `kill`.
    Kill(AgentArgs),
    /// `signal`.
    Signal(SignalArgs),
    /// `write_stdin`.
    WriteStdin(WriteStdinArgs),
    /// `close_stdin`.
    CloseStdin(AgentArgs),
    /// `read_logs`.
    ReadLogs(ReadLogsArgs),
    /// `stream_info`.
    StreamInfo(StreamInfoArgs),
    /// `wait`.
    Wait(WaitArgs),
    /// `remove`.
    Remove(AgentArgs),
    /// `batch`.
    Batch(BatchArgs),
    /// `stats`.
    Stats(NoArgs),
    /// `read_events`.
    ReadEvents(ReadEventsArgs),
}

impl Request {
    /// The op this request invokes.
    pub fn op(&self) -> Op {
        match self {
            Request::Health(_) => Op::Health,
            Request::Spawn(_) => Op::Spawn,
            Request::List(_) => Op::List,
            Request::Get(_) => Op::Get,
            Request::Pause(_) => Op::Pause,
            Request::Resume(_) => Op::Resume,
            Request::Stop(_) => Op::Stop,
            Request::Kill(_) => Op::Kill,
            Request::Signal(_) => Op::Signal,
            Request::WriteStdin(_) => Op::WriteStdin,
            Request::CloseStdin(_) => Op::CloseStdin,
            Request::ReadLogs(_) => Op::ReadLogs,
            Request::StreamInfo(_) => Op::StreamInfo,
            Request::Wait(_) => Op::Wait,
            Request::Remove(_) => Op::Remove,
            Request::Batch(_) => Op::Batch,
            Request::Stats(_) => Op::Stats,
            Request::ReadEvents(_) => Op::ReadEvents,
        }
    }
}
