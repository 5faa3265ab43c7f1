//! Sparse in-memory index of one segment: seq and ts to the file offset of a block.
//!
//! A raw (active) segment gets one entry for its first block, then one for the first block at or
//! past every `INDEX_EVERY` bytes, so a lookup lands at most `INDEX_EVERY` bytes (plus one
//! block) before the wanted record and `tail 100` reads a few tens of KiB however big the log
//! is. A packed segment has one entry per block (about 64 KiB of records each), read from its
//! footer. Each entry also notes how many bytes of output the segment holds before it, which is
//! what lets retention drop a log's oldest records a block at a time.

use std::sync::RwLock;

use drover_proto::Seq;

/// Bytes of raw segment between two index entries.
pub const INDEX_EVERY: u64 = 16 * 1024;

/// One index point: the block starting with `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub seq: Seq,
    pub ts: i64,
    pub offset: u64,
    /// Record data bytes in the segment before this block.
    pub out: u64,
}

/// A segment's index, shared between the writer (which appends) and readers (which search).
#[derive(Debug, Default)]
pub struct SegIndex {
    entries: RwLock<Vec<Entry>>,
}

impl SegIndex {
    pub fn new(entries: Vec<Entry>) -> SegIndex {
        SegIndex {
            entries: RwLock::new(entries),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Entry>> {
        // Writers only push whole entries; a poisoned lock still guards a valid list.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Add entries written by an append (offsets ascending).
    pub fn extend(&self, new: &[Entry]) {
        if new.is_empty() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.extend_from_slice(new);
    }

    /// The last entry at or before `seq`, if any.
    pub fn offset_for_seq(&self, seq: Seq) -> Option<Entry> {
        let d = self.read();
        let i = d.partition_point(|e| e.seq <= seq);
        i.checked_sub(1).map(|i| d[i])
    }

    /// The last entry whose ts is strictly before `ts` (scan from there to find the first record
    /// at or after `ts`); the first entry when none is.
    pub fn offset_for_ts(&self, ts: i64) -> Option<Entry> {
        let d = self.read();
        let i = d.partition_point(|e| e.ts < ts);
        d.get(i.saturating_sub(1)).copied()
    }

    /// The segment's first record's ts, once it has one.
    pub fn first_ts(&self) -> Option<i64> {
        self.read().first().map(|e| e.ts)
    }

    /// The first entry after `seq` that has at least `out` bytes of output before it: where a
    /// log may start once that much of this segment's output has to go.
    pub fn first_with_out(&self, after: Seq, out: u64) -> Option<Entry> {
        let d = self.read();
        d.iter().find(|e| e.seq > after && e.out >= out).copied()
    }
}

/// Decides which blocks get an entry while blocks are written or scanned in order.
#[derive(Debug, Default)]
pub struct Builder {
    last: Option<u64>,
    every: u64,
}

impl Builder {
    /// Entries spaced `INDEX_EVERY` bytes apart, continuing after an entry at `last_offset`
    /// (None for an empty segment).
    pub fn sparse(last_offset: Option<u64>) -> Builder {
        Builder {
            last: last_offset,
            every: INDEX_EVERY,
        }
    }

    /// An entry for every block.
    pub fn dense() -> Builder {
        Builder {
            last: None,
            every: 0,
        }
    }

    /// Note a block at `offset` with `out` bytes of output before it; returns the entry to add,
    /// if this block gets one.
    pub fn note(&mut self, seq: Seq, ts: i64, offset: u64, out: u64) -> Option<Entry> {
        let due = match self.last {
            None => true,
            Some(last) => offset >= last + self.every,
        };
        if due {
            self.last = Some(offset);
            Some(Entry {
                seq,
                ts,
                offset,
                out,
            })
        } else {
            None
        }
    }
}
