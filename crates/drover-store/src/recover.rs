//! Loading logs at startup: list segments, verify the newest ones, cut a torn tail.
//!
//! Only the last two segments are scanned. The syncer fdatasyncs sealed segments before (or
//! with) the active one and only then counts records as synced, so a crash can tear at most the
//! unsynced end of the log: with the default sizes (8 MiB segments, at most 10 000 records per
//! sync) that end lies in the last two segments. Older segments are verified lazily, when a read
//! first builds their index; damage there is reported as `StoreError::Corrupt`.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use drover_proto::{AgentId, Seq};

use crate::index::{Builder, SegIndex};
use crate::log::{LogState, Segment};
use crate::segment::{self, FILE_HEADER_LEN};
use crate::StoreError;

/// Load the log in `dir` (all of its records are from earlier runs, so it starts closed).
pub fn load(dir: &Path, id: AgentId, budget: u64) -> Result<LogState, StoreError> {
    let io = |what: &str, path: &Path, e| StoreError::io(format!("{what} {}", path.display()), e);
    let mut firsts: Vec<Seq> = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        if let Some(first) = entry.file_name().to_str().and_then(segment::parse_name) {
            firsts.push(first);
        }
    }
    firsts.sort();
    let mut state = LogState::new(dir.to_path_buf(), budget);
    let mut segments = VecDeque::new();
    for &first in &firsts {
        let path = dir.join(segment::file_name(first));
        let meta = fs::metadata(&path).map_err(|e| io("reading", &path, e))?;
        segments.push_back(Segment {
            first,
            path: path.into(),
            len: meta.len(),
            index: Arc::new(SegIndex::pending()),
            sealed_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    // Verify the last two segments, newest last; a tear in the older one invalidates the newer.
    let mut next_seq = Seq::FIRST;
    let verify_from = segments.len().saturating_sub(2);
    let mut i = verify_from;
    while i < segments.len() {
        let (valid_len, seg_next, entries) = verify(&segments[i])?;
        let seg = &mut segments[i];
        seg.len = valid_len;
        seg.index = Arc::new(SegIndex::complete(entries));
        next_seq = seg_next;
        let torn = segments.get(i + 1).is_some_and(|n| n.first != seg_next);
        if torn {
            for newer in segments.drain(i + 1..) {
                tracing::warn!(agent = %id, path = %newer.path.display(), "dropping segment after a torn one");
                fs::remove_file(&newer.path).map_err(|e| io("removing", &newer.path, e))?;
            }
        }
        i += 1;
    }
    if let Some(active) = segments.back() {
        let last = active.index.offset_for_seq(Seq(u64::MAX));
        state.builder = Builder::after(last.map(|e| e.offset));
    }
    state.bytes = segments.iter().map(|s| s.len).sum();
    state.next_seq = next_seq;
    state.segments = segments;
    Ok(state)
}

/// Scan one segment, truncating anything after its last valid frame (and rewriting a damaged
/// header). Returns the valid length, the seq after its last frame, and its index.
fn verify(seg: &Segment) -> Result<(u64, Seq, Vec<crate::index::Entry>), StoreError> {
    let path = &seg.path;
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(ctx("opening"), e))?;
    if !segment::header_ok(&file, seg.first).map_err(|e| StoreError::io(ctx("reading"), e))? {
        tracing::warn!(path = %path.display(), "segment header damaged; its records are dropped");
        file.set_len(0)
            .map_err(|e| StoreError::io(ctx("truncating"), e))?;
        drop(file);
        fs::remove_file(path).map_err(|e| StoreError::io(ctx("removing"), e))?;
        drop(segment::create(path, seg.first).map_err(|e| StoreError::io(ctx("recreating"), e))?);
        return Ok((FILE_HEADER_LEN, seg.first, Vec::new()));
    }
    let scan =
        segment::scan(path, seg.first, seg.len).map_err(|e| StoreError::io(ctx("scanning"), e))?;
    if scan.valid_len < seg.len {
        tracing::warn!(
            path = %path.display(),
            problem = scan.problem.as_deref().unwrap_or("trailing bytes"),
            kept = scan.valid_len,
            dropped = seg.len - scan.valid_len,
            "truncating damaged segment tail"
        );
        file.set_len(scan.valid_len)
            .map_err(|e| StoreError::io(ctx("truncating"), e))?;
        file.sync_data()
            .map_err(|e| StoreError::io(ctx("syncing"), e))?;
    }
    Ok((scan.valid_len, scan.next_seq, scan.entries))
}
