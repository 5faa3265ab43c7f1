//! Log queries: locate the start's block through the segment index, then decode blocks forward
//! (a packed block is decompressed whole: about 64 KiB of records).

use std::io;
use std::path::Path;
use std::sync::Arc;

use drover_proto::limits::{DEFAULT_READ_LIMIT, MAX_READ_LIMIT};
use drover_proto::Seq;

use crate::block::{RecordRef, Records};
use crate::index::SegIndex;
use crate::log::AgentLog;
use crate::segment::{BlockReader, Step, FILE_HEADER_LEN};
use crate::{LogQuery, LogRead, StoreError};

/// A read stops collecting once it holds this many bytes of record data (at least one record is
/// always returned), so one query's memory is bounded whatever the records' size.
pub const MAX_READ_BYTES: usize = 8 * 1024 * 1024;
/// With a stream filter, a read scans at most this many records per record it may return
/// before handing back `next_seq` to continue from.
const SCAN_FACTOR: u64 = 64;

/// Segment metadata copied under the log lock; all file IO happens on this copy.
struct SegSnap {
    first: Seq,
    /// The seq after its last record.
    next: Seq,
    path: Arc<Path>,
    /// Where its blocks end.
    end: u64,
    index: Arc<SegIndex>,
}

struct Snapshot {
    first_seq: Seq,
    next_seq: Seq,
    segs: Vec<SegSnap>,
}

/// A segment vanished under the read (retention or removal): take a fresh snapshot.
enum Failure {
    Vanished,
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

fn snapshot(log: &AgentLog) -> Snapshot {
    let st = log.lock();
    let mut segs: Vec<SegSnap> = Vec::with_capacity(st.segments.len());
    for (i, s) in st.segments.iter().enumerate() {
        let next = st.segments.get(i + 1).map_or(st.next_seq, |n| n.first);
        segs.push(SegSnap {
            first: s.first,
            next,
            path: s.path.clone(),
            end: s.end,
            index: s.index.clone(),
        });
    }
    Snapshot {
        first_seq: st.first_seq(),
        next_seq: st.next_seq,
        segs,
    }
}

/// Run a query (see `Store::read`).
pub fn read(log: &AgentLog, q: &LogQuery) -> Result<LogRead, StoreError> {
    read_capped(log, q, MAX_READ_BYTES)
}

/// Run a query returning at most about `max_bytes` of record data (always at least one record).
pub fn read_capped(log: &AgentLog, q: &LogQuery, max_bytes: usize) -> Result<LogRead, StoreError> {
    let mut attempts = 0;
    loop {
        match read_snapshot(&snapshot(log), q, max_bytes) {
            Ok(r) => return Ok(r),
            Err(Failure::Store(e)) => return Err(e),
            Err(Failure::Vanished) if attempts < 3 => attempts += 1,
            Err(Failure::Vanished) => {
                return Err(StoreError::NotFound(format!("log of agent {}", log.id)))
            }
        }
    }
}

fn read_snapshot(snap: &Snapshot, q: &LogQuery, max_bytes: usize) -> Result<LogRead, Failure> {
    let end = q.until_seq.map_or(snap.next_seq, |u| u.min(snap.next_seq));
    let limit = match q.limit {
        0 => DEFAULT_READ_LIMIT,
        n => n.min(MAX_READ_LIMIT),
    } as usize;
    // The earliest seq the caller asked for, to tell whether retention removed part of it.
    let mut start = Seq(0);
    if let Some(s) = q.since_seq {
        start = start.max(s);
    }
    if let Some(t) = q.tail {
        start = start.max(Seq(end.0.saturating_sub(u64::from(t))));
    }
    let mut truncated = false;
    if let Some(ts) = q.since {
        let (seq, before_first) = seq_at_ts(snap, ts)?;
        truncated = before_first && snap.first_seq > Seq::FIRST;
        start = start.max(seq);
    }
    truncated |= start.max(Seq::FIRST) < snap.first_seq;
    let from = start.max(snap.first_seq).max(Seq::FIRST);
    let mut out = LogRead {
        records: Vec::new(),
        first_seq: snap.first_seq,
        next_seq: from,
        truncated,
        dropped: None,
    };
    let max_scan = limit as u64 * if q.stream.is_some() { SCAN_FACTOR } else { 1 };
    let mut scanned = 0u64;
    let mut bytes = 0usize;
    let mut i = snap
        .segs
        .partition_point(|s| s.first <= from)
        .saturating_sub(1);
    while i < snap.segs.len() && out.next_seq < end {
        let seg = &snap.segs[i];
        i += 1;
        if seg.next <= out.next_seq {
            continue;
        }
        let offset = seg
            .index
            .offset_for_seq(out.next_seq)
            .map_or(FILE_HEADER_LEN, |e| e.offset);
        let mut reader = open(&seg.path, offset, seg.end)?;
        let stop = end.min(seg.next);
        while out.next_seq < stop {
            let (header, payload) = match reader.next().map_err(|e| read_err(&seg.path, e))? {
                Step::Block(_, h, payload) => (h, payload),
                Step::End | Step::Torn(_) => {
                    return Err(corrupt(&seg.path, format!("ends before seq {stop}")))
                }
                Step::Bad(at, why) => return Err(corrupt(&seg.path, format!("{why} at {at}"))),
            };
            if header.end_seq() <= out.next_seq {
                continue;
            }
            if header.first_seq > out.next_seq {
                let detail = format!(
                    "block of seq {} where {} was expected",
                    header.first_seq, out.next_seq
                );
                return Err(corrupt(&seg.path, detail));
            }
            for r in Records::new(&header, payload) {
                let r: RecordRef<'_> = r.map_err(|why| corrupt(&seg.path, why.to_owned()))?;
                if r.seq < out.next_seq {
                    continue;
                }
                if r.seq >= stop {
                    break;
                }
                out.next_seq = r.seq.next();
                scanned += 1;
                if q.stream.is_none_or(|s| s == r.stream) {
                    bytes += r.data.len();
                    out.records.push(r.to_record());
                }
                if out.records.len() >= limit || scanned >= max_scan || bytes >= max_bytes {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The seq of the first record with `ts >= since`, and whether `since` lies before every kept
/// record. Assumes timestamps do not decrease along the log (they come from one clock in
/// capture order); if they do, the answer is a record at or after some ts >= `since`.
fn seq_at_ts(snap: &Snapshot, since: i64) -> Result<(Seq, bool), Failure> {
    // The last segment whose first record is at or before `since`.
    let (mut lo, mut hi) = (0usize, snap.segs.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match first_ts(&snap.segs[mid])? {
            Some(ts) if ts <= since => lo = mid + 1,
            _ => hi = mid,
        }
    }
    let Some(seg) = lo.checked_sub(1).map(|i| &snap.segs[i]) else {
        return Ok((snap.first_seq, true));
    };
    let offset = seg
        .index
        .offset_for_ts(since)
        .map_or(FILE_HEADER_LEN, |e| e.offset);
    let mut reader = open(&seg.path, offset, seg.end)?;
    loop {
        match reader.next().map_err(|e| read_err(&seg.path, e))? {
            Step::Block(_, h, payload) => {
                for r in Records::new(&h, payload) {
                    let r = r.map_err(|why| corrupt(&seg.path, why.to_owned()))?;
                    if r.ts >= since && r.seq < seg.next {
                        return Ok((r.seq, false));
                    }
                }
            }
            Step::End => return Ok((seg.next, false)),
            Step::Torn(at) => return Err(corrupt(&seg.path, format!("torn block at {at}"))),
            Step::Bad(at, why) => return Err(corrupt(&seg.path, format!("{why} at {at}"))),
        }
    }
}

/// A segment's first record's ts; `None` for an empty segment.
fn first_ts(seg: &SegSnap) -> Result<Option<i64>, Failure> {
    Ok(seg.index.first_ts())
}

fn open(path: &Path, offset: u64, end: u64) -> Result<BlockReader, Failure> {
    BlockReader::open(path, offset, end).map_err(|e| read_err(path, e))
}

fn read_err(path: &Path, e: io::Error) -> Failure {
    if e.kind() == io::ErrorKind::NotFound {
        Failure::Vanished
    } else {
        Failure::Store(StoreError::io(format!("reading {}", path.display()), e))
    }
}

fn corrupt(path: &Path, detail: String) -> Failure {
    Failure::Store(StoreError::corrupt(path, detail))
}

/// Records `[from, until)` (at most `limit`), for followers refilling from the store.
pub fn range(
    log: &AgentLog,
    from: Seq,
    until: Seq,
    limit: u32,
    max_bytes: usize,
) -> Result<LogRead, StoreError> {
    let q = LogQuery {
        since_seq: Some(from),
        until_seq: Some(until),
        limit,
        ..LogQuery::default()
    };
    read_capped(log, &q, max_bytes)
}
