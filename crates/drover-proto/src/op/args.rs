//! The arguments of each op.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Op;
use crate::{AgentSpec, AgentState, EventSeq, Seq, StreamKind};

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
    /// At most this many agents in this page (oldest first); a page also stops at the daemon's
    /// byte budget, whichever comes first.
    pub limit: Option<u32>,
    /// Continue after the page that returned this `next_cursor` (opaque); the first page when
    /// absent.
    pub cursor: Option<String>,
    /// Include each agent's `spec` (omitted by default: specs can be up to 1 MiB each).
    pub specs: bool,
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

/// `read_logs` arguments. The start is the latest of those given: `since_seq`, the first of the
/// last `tail` records, the first record at or after `since`; else the first record kept.
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
