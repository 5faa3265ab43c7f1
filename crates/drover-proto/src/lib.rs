//! `drover-proto`: the Drover wire protocol, version 1.
//!
//! This crate defines every type that crosses a process boundary: request and reply envelopes,
//! the arguments and result of each op, agent specs and info, log records, lifecycle events,
//! heartbeats, error codes, PUB topics and size limits, plus the MessagePack codec that turns
//! them into bytes and back.
//!
//! It does no IO: no sockets, no files, no clocks beyond [`now_ns`]. The daemon, the store and the
//! client all depend on it; it depends on no other Drover crate. `docs/PROTOCOL.md` is the prose
//! form of this crate and the two are kept in step.

pub mod activity;
mod agent;
mod batch;
mod codec;
mod error;
mod event;
mod id;
pub mod limits;
pub mod op;
mod record;
mod role;
mod shape;
mod spec;
pub mod time;
pub mod topic;

pub use activity::{
    Activity, Attention, AttentionReason, EarlierRuns, Phase, Tokens, ToolCall, Usd,
};
pub use agent::{AgentInfo, AgentState, AgentStatus, Runs};
pub use batch::{
    decode_batch, decode_read_logs_reply, encode_batch, encode_read_logs_reply, peek_batch,
};
pub use codec::{
    decode, decode_reply, decode_request, encode, encode_reply, encode_request, request_from_value,
    ReplyBody, RequestEnvelope, RequestError,
};
pub use error::{ErrorBody, ErrorCode, ProtoError};
pub use event::{Event, EventKind, Heartbeat, SeqRange};
pub use id::{AgentId, DaemonId, EventSeq, Seq, HANDLE_LEN};
pub use op::{Op, Request};
pub use record::{Record, RecordBatch, StreamKind};
pub use role::Role;
pub use spec::{AgentSpec, Restart, RestartPolicy, StdinMode};

/// Protocol version spoken by this crate; sent as `"v"` in every envelope.
pub const PROTOCOL_VERSION: u32 = 1;

/// The current time as unix nanoseconds, the unit of every timestamp on the wire.
pub fn now_ns() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_nanos()).unwrap_or(i64::MAX)
}
