//! Sparse in-memory index of one segment: seq and ts to file offset.
//!
//! One entry for the segment's first record, then one for the first record at or past every
//! `INDEX_EVERY` bytes. A lookup lands at most `INDEX_EVERY` bytes (plus one record) before the
//! wanted record, so `tail 100` reads a few tens of KiB however big the log is. The active
//! segment's index grows with each append; a sealed segment found on disk at startup gets its
//! index built by one scan the first time a reader needs it (so opening the store does not read
//! every log).

use std::sync::RwLock;

use drover_proto::Seq;

/// Bytes of segment between two index entries.
pub const INDEX_EVERY: u64 = 16 * 1024;

/// One index point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: Seq,
    pub ts: i64,
    pub offset: u64,
}

#[derive(Debug, Default)]
struct Data {
    entries: Vec<Entry>,
    /// False until the entries cover the whole segment (sealed segments found at startup).
    complete: bool,
}

/// A segment's index, shared between the writer (which appends) and readers (which search).
#[derive(Debug, Default)]
pub struct SegIndex {
    data: RwLock<Data>,
}

impl SegIndex {
    /// An index known to cover its segment (a new segment, or one just scanned).
    pub fn complete(entries: Vec<Entry>) -> SegIndex {
        SegIndex {
            data: RwLock::new(Data {
                entries,
                complete: true,
            }),
        }
    }

    /// An index still to be built on first use.
    pub fn pending() -> SegIndex {
        SegIndex::default()
    }

    pub fn is_complete(&self) -> bool {
        self.data.read().map(|d| d.complete).unwrap_or(false)
    }

    /// Replace a pending index with the result of a scan.
    pub fn fill(&self, entries: Vec<Entry>) {
        if let Ok(mut d) = self.data.write() {
            if !d.complete {
                d.entries = entries;
                d.complete = true;
            }
        }
    }

    /// Add entries written by an append (offsets ascending).
    pub fn extend(&self, new: &[Entry]) {
        if new.is_empty() {
            return;
        }
        if let Ok(mut d) = self.data.write() {
            d.entries.extend_from_slice(new);
        }
    }

    /// The offset of the last entry at or before `seq`, if any.
    pub fn offset_for_seq(&self, seq: Seq) -> Option<Entry> {
        let d = self.data.read().ok()?;
        let i = d.entries.partition_point(|e| e.seq <= seq);
        i.checked_sub(1).map(|i| d.entries[i])
    }

    /// The last entry whose ts is strictly before `ts` (scan from there to find the first record
    /// at or after `ts`); the first entry when none is.
    pub fn offset_for_ts(&self, ts: i64) -> Option<Entry> {
        let d = self.data.read().ok()?;
        let i = d.entries.partition_point(|e| e.ts < ts);
        d.entries.get(i.saturating_sub(1)).copied()
    }

    /// The segment's first record's ts, once known.
    pub fn first_ts(&self) -> Option<i64> {
        self.data.read().ok()?.entries.first().map(|e| e.ts)
    }
}

/// Builds entries while frames are written or scanned in order.
#[derive(Debug, Default)]
pub struct Builder {
    last: Option<u64>,
}

impl Builder {
    /// A builder continuing after an entry at `last_offset` (None for an empty segment).
    pub fn after(last_offset: Option<u64>) -> Builder {
        Builder { last: last_offset }
    }

    /// Note a frame at `offset`; returns the entry to add, if this frame gets one.
    pub fn note(&mut self, seq: Seq, ts: i64, offset: u64) -> Option<Entry> {
        let due = match self.last {
            None => true,
            Some(last) => offset >= last + INDEX_EVERY,
        };
        if due {
            self.last = Some(offset);
            Some(Entry { seq, ts, offset })
        } else {
            None
        }
    }
}
