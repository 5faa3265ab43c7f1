//! The result of each op.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AgentRef;
use crate::{AgentInfo, DaemonId, ErrorBody, Event, EventSeq, Record, Seq, SeqRange};

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
    /// Matching agents, oldest first (each without its `spec` unless the request asked).
    pub agents: Vec<AgentInfo>,
    /// Pass as `cursor` for the next page; nil (or absent, from an older daemon) after the last.
    #[serde(default)]
    pub next_cursor: Option<String>,
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
    /// Records the daemon could not store and lost for good (a full disk when the agent
    /// ended), when the read reached them: `next_seq` continues after them. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<SeqRange>,
    /// Bytes of output the log keeps: the data of its records from `first_seq` to `end_seq`.
    /// The agent's `log_budget` bounds this (0 from an older daemon).
    #[serde(default)]
    pub output_bytes: u64,
    /// Bytes the log's files take on disk (compressed once sealed; 0 from an older daemon).
    #[serde(default)]
    pub disk_bytes: u64,
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
    /// Bytes of logs kept on disk (and the registry database).
    pub log_bytes: u64,
    /// Bytes of output the logs keep (record data, before compression).
    pub log_output_bytes: u64,
    /// PUB messages dropped because the publish queue was full (subscribers refill by `seq`).
    pub pub_dropped: u64,
    /// Records lost for good because the store could not keep them (each range is also a
    /// `log_dropped` event and is reported by reads of the log).
    #[serde(default)]
    pub records_dropped: u64,
    /// Registry changes (state changes and their events) kept in memory because the registry
    /// refused them (a full disk); retried until stored, their events published only then.
    #[serde(default)]
    pub registry_queued: u64,
    /// Control replies dropped because the client was gone or had not read its replies for the
    /// documented stall time (10 s).
    #[serde(default)]
    pub replies_dropped: u64,
    /// Bytes of captured output kept in memory because the store refused them (a full disk),
    /// retried until stored; agents are paused while too much waits.
    #[serde(default)]
    pub store_backlog_bytes: u64,
}
