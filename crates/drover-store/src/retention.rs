//! Retention: delete the oldest whole sealed segments when a budget is exceeded.
//!
//! Per agent first (inline in the append that crossed the agent's budget: one `unlink` per
//! segment, rare), then globally (on the syncer thread, so appends never scan other agents):
//! sealed segments of all agents, oldest sealed first, until the total is within the global
//! budget. The active segment is never deleted, so a log always keeps its newest records and
//! stays contiguous from its first kept seq.

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use drover_proto::Seq;

use crate::log::{AgentLog, LogState};
use crate::Shared;

/// Trim one log to its own budget.
pub fn trim_agent(st: &mut LogState, shared: &Shared) {
    while st.bytes > st.budget && st.segments.len() > 1 {
        if !remove_oldest(st, shared) {
            break;
        }
    }
}

/// Delete the log's oldest segment. False if the file could not be removed (kept, retried later).
fn remove_oldest(st: &mut LogState, shared: &Shared) -> bool {
    let Some(seg) = st.segments.front() else {
        return false;
    };
    match fs::remove_file(&seg.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %seg.path.display(), error = %e, "retention could not remove segment");
            return false;
        }
    }
    let len = seg.len;
    st.segments.pop_front();
    st.bytes -= len;
    st.dir_dirty = true;
    shared.usage.fetch_sub(len, Ordering::Relaxed);
    true
}

/// Bring all logs within the global budget, oldest sealed segments first.
pub fn trim_global(shared: &Shared) {
    let budget = shared.config.global_budget;
    if shared.usage.load(Ordering::Relaxed) <= budget {
        return;
    }
    let logs: Vec<Arc<AgentLog>> = shared.all_logs();
    let mut candidates: Vec<(SystemTime, Seq, usize)> = Vec::new();
    for (i, log) in logs.iter().enumerate() {
        let st = log.lock();
        let sealed = st.segments.len().saturating_sub(1);
        for seg in st.segments.iter().take(sealed) {
            candidates.push((seg.sealed_at, seg.first, i));
        }
    }
    // Oldest first; within one agent, sealing order and seq order agree.
    candidates.sort();
    for (_, first, i) in candidates {
        if shared.usage.load(Ordering::Relaxed) <= budget {
            break;
        }
        let mut st = logs[i].lock();
        // Only a log's oldest segment may go; skip if the log changed since the listing.
        if st.segments.len() > 1 && st.segments.front().is_some_and(|s| s.first == first) {
            remove_oldest(&mut st, shared);
        }
    }
}
