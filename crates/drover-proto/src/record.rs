//! Log records: one line (or piece of a line) an agent printed, numbered and timestamped.

use serde::{Deserialize, Serialize};

use crate::{AgentId, Seq};

/// Which of the agent's output streams a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// The agent's standard output.
    Stdout,
    /// The agent's standard error.
    Stderr,
}

impl StreamKind {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Stdout => "stdout",
            StreamKind::Stderr => "stderr",
        }
    }
}

/// One record. `data` includes the trailing newline unless `partial` is set, so concatenating a
/// stream's records reproduces the stream byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Number within the agent, shared by both streams.
    pub seq: Seq,
    /// Capture time, unix nanoseconds.
    pub ts: i64,
    /// Which stream.
    pub stream: StreamKind,
    /// The raw bytes (MessagePack `bin`), never re-encoded.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    /// True when the record does not end with a newline: the line was longer than the record
    /// limit, or it sat unfinished for a while, or the stream ended without one.
    #[serde(default)]
    pub partial: bool,
}

/// Consecutive records of one agent, as published on `log.<agent_id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordBatch {
    /// Whose records.
    pub agent: AgentId,
    /// Records in `seq` order with no gap between them.
    pub records: Vec<Record>,
}
