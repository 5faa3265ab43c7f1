//! Retention: drop a log's oldest records when a budget is exceeded.
//!
//! Per agent first, in bytes of output (inline in the append that crossed the agent's budget):
//! the log's start moves forward a block at a time (an index entry: one packed block, or about
//! 16 KiB of a raw segment) until the output kept is within the budget, and a segment is
//! deleted once none of its records is kept. So a log keeps at most its budget of output and
//! less than one block under it, and the active segment of a small budget is small too (see
//! `LogState::segment_limit`). The newest block always stays. Then globally, in bytes on disk (on the syncer thread, so appends never scan other agents):
//! sealed segments of all agents, oldest sealed first, until the total is within the global
//! budget. The active segment of a live log is never deleted, so it always keeps its newest
//! records and stays contiguous from its first kept seq. A closed log (its agent ended) has no
//! active segment any more: its last segment may go too, or ended agents' final segments
//! would add up past the global budget; such a log then reads as empty with `truncated`.

use std::fs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use drover_proto::Seq;

use crate::log::{AgentLog, LogState};
use crate::Shared;

/// Trim one log to its own budget of output bytes.
pub fn trim_agent(st: &mut LogState, shared: &Shared) {
    while st.output > st.budget {
        let excess = st.output - st.budget;
        let Some(front) = st.segments.front() else {
            return;
        };
        let (start, skipped) = st.trim.unwrap_or((front.first, 0));
        let kept_here = front.output.saturating_sub(skipped);
        if kept_here <= excess && st.segments.len() > 1 {
            if !remove_oldest(st, shared) {
                return;
            }
            continue;
        }
        // Move the start to the first block that leaves enough of this segment out.
        match front.index.first_with_out(start, skipped + excess) {
            Some(entry) => {
                st.output -= entry.out - skipped;
                st.trim = Some((entry.seq, entry.out));
                return;
            }
            // Only the segment's last block is left to give, and a newer segment holds more.
            None if st.segments.len() > 1 => {
                if !remove_oldest(st, shared) {
                    return;
                }
            }
            // The newest block stays.
            None => return,
        }
    }
}

/// Delete the log's oldest segment. False if the file could not be removed (kept, retried later).
fn remove_oldest(st: &mut LogState, shared: &Shared) -> bool {
    let Some(seg) = st.segments.front() else {
        return false;
    };
    if st.segments.len() == 1 {
        // The log's last file goes: its end stays on disk first, so a reopened store goes on
        // from there rather than from seq 1 (numbers are never reused, and an earlier start
        // reads as `truncated`).
        if let Err(e) = crate::recover::write_end(&st.dir, st.next_seq) {
            tracing::warn!(dir = %st.dir.display(), error = %e, "could not keep an emptied log's end");
            return false;
        }
    }
    match fs::remove_file(&seg.path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %seg.path.display(), error = %e, "retention could not remove segment");
            return false;
        }
    }
    let (len, output) = (seg.len, seg.output);
    let skipped = st.trim.take().map_or(0, |(_, out)| out);
    st.segments.pop_front();
    st.bytes -= len;
    st.output -= output.saturating_sub(skipped).min(st.output);
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
        let closed = st.live.is_none() && !st.unsettled;
        let last = st.segments.len().saturating_sub(1);
        let deletable = if closed { st.segments.len() } else { last };
        for (k, seg) in st.segments.iter().take(deletable).enumerate() {
            // A closed log's last segment was never sealed: it ended with its last append.
            let when = if k == last {
                SystemTime::now()
                    .checked_sub(st.last_append.elapsed())
                    .unwrap_or(seg.sealed_at)
            } else {
                seg.sealed_at
            };
            candidates.push((when, seg.first, i));
        }
    }
    // Oldest first; within one agent, sealing order and seq order agree.
    candidates.sort();
    for (_, first, i) in candidates {
        if shared.usage.load(Ordering::Relaxed) <= budget {
            break;
        }
        let mut st = logs[i].lock();
        // Only a log's oldest segment may go, and a live log's last one never; skip if the log
        // changed since the listing.
        let may_go = st.segments.len() > 1 || (st.live.is_none() && !st.unsettled);
        if may_go && st.segments.front().is_some_and(|s| s.first == first) {
            if st.segments.len() == 1 {
                // Its writer goes with it; the log is closed, nothing appends any more.
                st.writer.close();
            }
            remove_oldest(&mut st, shared);
        }
    }
}
