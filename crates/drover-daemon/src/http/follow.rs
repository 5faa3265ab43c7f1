//! `GET /v1/agents/{agent}/logs?follow=true`: one agent's log as Server-Sent Events.
//!
//! The stream is a store [`Follower`] (stored history from the start seq, then live appends, no
//! gap, no duplicate, bounded memory) turned into frames:
//!
//! - `event: log`, `id: <seq>`, `data: {seq, ts, stream, text | data_b64, partial}` per record;
//! - `event: gap`, `id: <to>`, `data: {from, to}` when records the follower still needed will
//!   not come: removed by retention while it lagged, never stored (the agent ended on a full
//!   disk), or unreadable (a store read failed). A lagging follower otherwise refills from the
//!   store itself, so these are the only ways records are skipped, and none is silent;
//! - `event: truncated`, `data: {requested, first_available}` when the start was already removed;
//! - `event: exit`, `data: {state, exit_code, signal, error}` once the agent's log is closed and
//!   everything was sent; then the stream ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use drover_proto::{AgentId, AgentInfo, ErrorCode, Seq, StreamKind};
use drover_store::{FollowItem, Follower, LogQuery};
use serde::Serialize;

use super::sse::{self, Source};
use super::{record, ApiError, Http};
use crate::daemon::Shared;
use crate::error::store_error;

/// Where a follow starts and what it keeps.
#[derive(Debug, Default)]
pub(super) struct FollowFrom {
    /// `Last-Event-ID` (the last seq the client has): resume after it. Wins over the rest.
    pub(super) last_event_id: Option<u64>,
    /// First seq wanted.
    pub(super) since_seq: Option<u64>,
    /// The last N records, then live; `0` is only what is printed from now on.
    pub(super) tail: Option<u32>,
    /// The first record at or after this time (unix ns).
    pub(super) since: Option<i64>,
    /// Only this stream.
    pub(super) stream: Option<StreamKind>,
}

/// Start following `agent`: an SSE response that runs until the agent's log is closed, the
/// client goes away, or the daemon shuts down.
pub(super) fn start(
    http: &Arc<Http>,
    agent: AgentInfo,
    from: &FollowFrom,
) -> Result<axum::response::Response, ApiError> {
    let shared = &http.shared;
    let counted = FollowerGuard::new(Arc::clone(shared)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::LimitReached,
            format!(
                "{} log streams are open, the maximum",
                shared.config.max_streams
            ),
        )
    })?;
    let started = Instant::now();
    let result = start_seq(shared, agent.id, from).and_then(|since| {
        shared
            .store
            .follow(agent.id, since)
            .map_err(|e| ApiError::from(store_error(e)))
    });
    shared.count_request(
        "follow_logs",
        started.elapsed(),
        result.as_ref().err().map(|e| e.0.code.as_str()),
    );
    let live = shared.live(agent.id).map(|live| live.info.clone());
    let source = LogSource {
        follower: result?,
        stream: from.stream,
        agent,
        live,
        done: false,
        counted,
    };
    Ok(sse::response(source, http.stop.clone()))
}

/// The first seq to send.
fn start_seq(shared: &Shared, agent: AgentId, from: &FollowFrom) -> Result<Seq, ApiError> {
    let bounds = shared
        .store
        .log_bounds(agent)
        .map_err(|e| ApiError::from(store_error(e)))?;
    if let Some(last) = from.last_event_id {
        // A client resuming after a record this log never had is confused (another agent's
        // stream?); following would skip everything until the log caught up, silently.
        if last >= bounds.next_seq.0 {
            return Err(ApiError::bad_request(format!(
                "Last-Event-ID {last} is beyond this log, which ends before seq {}",
                bounds.next_seq
            )));
        }
        return Ok(Seq(last.saturating_add(1)));
    }
    // A `since_seq` in the future is fine: the stream starts when that record is printed.
    if let Some(seq) = from.since_seq {
        return Ok(Seq(seq));
    }
    if let Some(tail) = from.tail {
        let kept = bounds.next_seq.0 - bounds.first_seq.0;
        return Ok(Seq(bounds.next_seq.0 - kept.min(u64::from(tail))));
    }
    if let Some(since) = from.since {
        let query = LogQuery {
            since: Some(since),
            limit: 1,
            ..LogQuery::default()
        };
        let read = shared
            .store
            .read(agent, &query)
            .map_err(|e| ApiError::from(store_error(e)))?;
        return Ok(read.records.first().map_or(read.next_seq, |r| r.seq));
    }
    Ok(bounds.first_seq)
}

/// Counts a live log follower in `counters.followers` for exactly as long as it exists.
#[derive(Debug)]
struct FollowerGuard(Arc<Shared>);

impl FollowerGuard {
    /// Count one more follower, unless that would pass the maximum.
    fn new(shared: Arc<Shared>) -> Option<FollowerGuard> {
        let before = shared.counters.followers.fetch_add(1, Ordering::Relaxed);
        // Constructed even when refused, so its drop undoes the increment.
        let guard = FollowerGuard(shared);
        (before < guard.0.config.max_streams as u64).then_some(guard)
    }
}

impl Drop for FollowerGuard {
    fn drop(&mut self) {
        self.0.counters.followers.fetch_sub(1, Ordering::Relaxed);
    }
}

struct LogSource {
    follower: Follower,
    stream: Option<StreamKind>,
    /// The agent as resolved at the start; the exit event reads it afresh.
    agent: AgentInfo,
    /// A live agent's record as its observer keeps it: its last value is how it ended, even
    /// once the agent was removed (`rm`, `prune`, `max_ended_agents`) before the exit event.
    live: Option<tokio::sync::watch::Receiver<AgentInfo>>,
    done: bool,
    /// Also the way to the daemon's state.
    counted: FollowerGuard,
}

#[derive(Serialize)]
struct Gap {
    from: Seq,
    to: Seq,
}

#[derive(Serialize)]
struct Truncated {
    requested: Seq,
    first_available: Seq,
}

#[derive(Serialize)]
struct Exit<'a> {
    state: &'static str,
    exit_code: Option<i32>,
    signal: Option<i32>,
    error: Option<&'a str>,
}

impl Source for LogSource {
    async fn next_frames(&mut self) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        loop {
            let mut out = Vec::new();
            match self.follower.next().await {
                Some(FollowItem::Records(records)) => {
                    // The JSON and framing around a record's bytes is under 128 bytes.
                    out.reserve(records.iter().map(|r| r.data.len() + 128).sum());
                    for record in &records {
                        if self.stream.is_some_and(|s| s != record.stream) {
                            continue;
                        }
                        push_log(&mut out, record);
                    }
                    if out.is_empty() {
                        continue;
                    }
                }
                Some(FollowItem::Lag { from, to }) => {
                    sse::push_json_event(&mut out, Some(to.0), "gap", &Gap { from, to });
                }
                Some(FollowItem::Truncated {
                    requested,
                    first_available,
                }) => {
                    let truncated = Truncated {
                        requested,
                        first_available,
                    };
                    sse::push_json_event(&mut out, None, "truncated", &truncated);
                }
                None => {
                    self.done = true;
                    self.push_exit(&mut out);
                }
            }
            return Some(out);
        }
    }
}

impl LogSource {
    /// The final event. The log is closed only after the agent's terminal status was recorded,
    /// so the registry has it.
    fn push_exit(&self, out: &mut Vec<u8>) {
        let shared = &self.counted.0;
        let now = shared.store.agent(self.agent.id).ok().flatten();
        // Removed meanwhile: never the snapshot from the start (it said `running`).
        let last = self.live.as_ref().map(|live| live.borrow().clone());
        let agent = now.as_ref().or(last.as_ref()).unwrap_or(&self.agent);
        let exit = Exit {
            state: agent.state().as_str(),
            exit_code: agent.status.exit_code(),
            signal: agent.status.signal(),
            error: agent.status.error(),
        };
        // The stream is over for good: a browser's EventSource reconnects on close unless told
        // otherwise, so ask it to wait a day (pages should close it on `exit`).
        out.extend_from_slice(b"retry: 86400000\n");
        sse::push_json_event(out, None, "exit", &exit);
    }
}

/// One `event: log` frame, the record's JSON written straight into the buffer.
fn push_log(out: &mut Vec<u8>, record: &drover_proto::Record) {
    out.extend_from_slice(b"id: ");
    record::push_u64(out, record.seq.0);
    out.extend_from_slice(b"\nevent: log\ndata: ");
    record::write(out, record);
    out.extend_from_slice(b"\n\n");
}
