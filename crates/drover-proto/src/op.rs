//! Every v1 op: its name, its arguments and its result.
//!
//! A request on the wire is one map: the envelope keys `v`, `id`, `op` next to the op's argument
//! fields. A successful reply is one map: `v`, `id`, `ok: true` next to the result fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    AgentInfo, AgentSpec, AgentState, DaemonId, ErrorBody, Event, EventSeq, Record, Seq, StreamKind,
};

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

/// Arguments of ops that take none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// An agent reference: an id, a unique id prefix, or a name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentRef(pub String);

impl AgentRef {
    /// A reference from any string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
}

impl std::fmt::Display for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Arguments naming one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentArgs {
    /// The agent.
    pub agent: AgentRef,
}

/// `spawn` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnArgs {
    /// What to run.
    pub spec: AgentSpec,
}

/// `list` arguments; every filter is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListArgs {
    /// Only agents in this state.
    pub state: Option<AgentState>,
    /// Only agents carrying every one of these labels with these values.
    pub labels: BTreeMap<String, String>,
    /// At most this many agents (oldest first).
    pub limit: Option<u32>,
}

/// `stop` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopArgs {
    /// The agent.
    pub agent: AgentRef,
    /// Time between SIGTERM and SIGKILL; the daemon's default (10 s) when absent.
    #[serde(default)]
    pub grace_ms: Option<u64>,
}

/// A signal by name (`"TERM"`, `"SIGTERM"`) or number (`15`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SignalSpec {
    /// A number.
    Number(i32),
    /// A name, with or without the `SIG` prefix, any case.
    Name(String),
}

/// `signal` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalArgs {
    /// The agent.
    pub agent: AgentRef,
    /// Which signal.
    pub signal: SignalSpec,
}

/// `write_stdin` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStdinArgs {
    /// The agent.
    pub agent: AgentRef,
    /// The bytes to queue (MessagePack `bin`; a `str` is accepted too).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// `read_logs` arguments. Start is `since_seq`, else the last `tail` records, else `since` a
/// time, else the first record kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadLogsArgs {
    /// The agent.
    pub agent: AgentRef,
    /// First seq wanted (inclusive).
    #[serde(default)]
    pub since_seq: Option<Seq>,
    /// Stop before this seq (exclusive).
    #[serde(default)]
    pub until_seq: Option<Seq>,
    /// The last N records.
    #[serde(default)]
    pub tail: Option<u32>,
    /// Records captured at or after this time, unix nanoseconds.
    #[serde(default)]
    pub since: Option<i64>,
    /// Only this stream.
    #[serde(default)]
    pub stream: Option<StreamKind>,
    /// At most this many records (default 1000, at most 10000).
    #[serde(default)]
    pub limit: Option<u32>,
}

impl ReadLogsArgs {
    /// Read from the first record kept, with every other option at its default.
    pub fn new(agent: AgentRef) -> Self {
        ReadLogsArgs {
            agent,
            since_seq: None,
            until_seq: None,
            tail: None,
            since: None,
            stream: None,
            limit: None,
        }
    }
}

/// `stream_info` arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamInfoArgs {
    /// Give the topics of this agent; all agents' when absent.
    pub agent: Option<AgentRef>,
}

/// `wait` arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitArgs {
    /// The agent.
    pub agent: AgentRef,
    /// Give up after this long with `timeout`; wait indefinitely when absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// `batch` arguments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchArgs {
    /// The op to apply: `get`, `pause`, `resume`, `stop`, `kill`, `signal`, `close_stdin`,
    /// `remove`. On the wire it is `batch_op`, because the envelope's `op` is `"batch"`.
    #[serde(rename = "batch_op")]
    pub op: Op,
    /// The agents, each an id, prefix or name.
    pub agents: Vec<AgentRef>,
    /// Further arguments of the op (`grace_ms`, `signal`), shared by every agent.
    #[serde(default)]
    pub args: BTreeMap<String, rmpv::Value>,
    /// Stop at the first failure; later agents get no result.
    #[serde(default)]
    pub fail_fast: bool,
}

/// `read_events` arguments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadEventsArgs {
    /// Events numbered after this one (exclusive); from the oldest kept when absent.
    pub after: Option<EventSeq>,
    /// At most this many events (default 1000, at most 10000).
    pub limit: Option<u32>,
}

/// `read_events` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadEventsResult {
    /// Events in `event_seq` order.
    pub events: Vec<Event>,
    /// The latest event number the daemon has issued.
    pub last_event_seq: EventSeq,
}

/// `health` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResult {
    /// The daemon's version.
    pub version: String,
    /// The protocol version (1).
    pub protocol: u32,
    /// This daemon run's id.
    pub daemon: DaemonId,
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// Number of agents by state name.
    pub agents: BTreeMap<String, u64>,
}

/// Result carrying one agent (`spawn`, `get`, `pause`, `resume`, `stop`, `kill`, `signal`,
/// `wait`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentResult {
    /// The agent after the op.
    pub agent: AgentInfo,
}

/// `list` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResult {
    /// Matching agents, oldest first.
    pub agents: Vec<AgentInfo>,
}

/// Result of ops with nothing to say (`close_stdin`, `remove`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyResult {}

/// `write_stdin` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteStdinResult {
    /// Bytes queued.
    pub written: u64,
}

/// `read_logs` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadLogsResult {
    /// The records, in `seq` order.
    pub records: Vec<Record>,
    /// The first seq still kept (retention may have removed older ones).
    pub first_seq: Seq,
    /// The seq to ask for next to continue after these records.
    pub next_seq: Seq,
    /// True when the requested start was removed by retention; the read began at `first_seq`.
    #[serde(default)]
    pub truncated: bool,
    /// The seq after the last record stored when the read was made. A reader has everything up
    /// to now once `next_seq >= end_seq`; otherwise (a limit, the 8 MiB reply cap, a stream
    /// filter) it reads again from `next_seq`.
    #[serde(default)]
    pub end_seq: Seq,
}

/// `stream_info` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfoResult {
    /// The PUB endpoint to connect a SUB socket to (never a wildcard address).
    #[serde(rename = "pub")]
    pub pub_endpoint: String,
    /// Topics to subscribe to.
    pub topics: Vec<String>,
    /// The heartbeat topic.
    #[serde(default)]
    pub heartbeat: String,
}

/// One agent's outcome inside a `batch` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// The reference as given.
    pub agent: AgentRef,
    /// Whether the op succeeded for it.
    pub ok: bool,
    /// The failure, when not ok.
    #[serde(default)]
    pub error: Option<ErrorBody>,
    /// The agent after the op, when the op returns one.
    #[serde(default)]
    pub info: Option<AgentInfo>,
}

/// `batch` result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// One item per agent, in request order (fewer with `fail_fast`).
    pub results: Vec<BatchItem>,
}

/// `stats` result: daemon-wide counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsResult {
    /// Milliseconds since the daemon started.
    pub uptime_ms: u64,
    /// Agents spawned.
    pub spawns: u64,
    /// Agents currently live (not terminal).
    pub agents_live: u64,
    /// Agents known in total.
    pub agents_total: u64,
    /// Records captured.
    pub records: u64,
    /// Bytes captured.
    pub bytes: u64,
    /// Requests served, by op.
    pub requests: BTreeMap<String, u64>,
    /// Requests refused with an error, by code.
    pub errors: BTreeMap<String, u64>,
    /// Events published.
    pub events: u64,
    /// Bytes of logs kept on disk.
    pub log_bytes: u64,
    /// PUB messages dropped because the publish queue was full (subscribers refill by `seq`).
    pub pub_dropped: u64,
}
