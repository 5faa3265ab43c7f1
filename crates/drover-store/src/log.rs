//! One agent's log: its segments, the writer, the live feed, and the append path.
//!
//! Locking rule: `AgentLog::state` is held only for in-memory bookkeeping, the append's single
//! `write(2)` and the live-feed send. Reads copy a snapshot of segment metadata under the lock
//! and then do all file IO without it; fdatasync runs on a cloned `Arc<File>` without it. So a
//! reader or the syncer never stalls the capture path, and a follower never blocks anyone.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use drover_proto::{AgentId, Record, Seq, SeqRange};
use tokio::sync::broadcast;

use crate::block::{self, RawBlock, MAX_DATA};
use crate::index::{Builder, Entry, SegIndex};
use crate::segment::{self, Kind, FILE_HEADER_LEN};
use crate::{Shared, StoreError};

/// Encode buffer capacity an agent keeps between appends.
const KEEP_BUFFER: usize = 64 * 1024;

/// The smallest segment a small budget gets (see `LogState::segment_limit`).
pub const MIN_SEGMENT: u64 = 16 * 1024;

/// A batch of consecutive records as the live feed carries it.
pub type Batch = Arc<[Record]>;

/// One segment file as the log tracks it.
#[derive(Debug, Clone)]
pub struct Segment {
    pub first: Seq,
    pub path: Arc<Path>,
    pub kind: Kind,
    /// Bytes of the file on disk that belong to it (a raw segment: whole, valid blocks).
    pub len: u64,
    /// Where its blocks end: `len` for a raw segment, the footer's start for a pack. Readers
    /// never look past this.
    pub end: u64,
    /// Bytes of record data (output) it holds.
    pub output: u64,
    pub index: Arc<SegIndex>,
    /// Packing failed on damage: it stays raw (reads report the damage) and is not retried.
    pub pack_failed: bool,
    /// When the segment was sealed (mtime for segments found at startup): global retention
    /// removes the oldest first.
    pub sealed_at: SystemTime,
}

/// Mutable state of one log, behind `AgentLog::state`.
/// A log's open writer (its active segment), counted store-wide in `Shared::open_writers` so
/// the syncer can keep the number of open writers under `max_open_writers`. Every change of
/// the writer goes through it, and one dropped with its log gives its count back.
#[derive(Debug, Default)]
pub struct WriterSlot {
    file: Option<Arc<File>>,
    /// The store-wide count, while `file` is set.
    counted: Option<Arc<AtomicUsize>>,
}

impl WriterSlot {
    /// The open writer, if any.
    pub fn file(&self) -> Option<Arc<File>> {
        self.file.clone()
    }

    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Open `file` as the writer; returns the one it replaces. Past `max_open_writers` the
    /// syncer is woken to close the writers appended to longest ago.
    pub(crate) fn set(&mut self, file: Arc<File>, shared: &Shared) -> Option<Arc<File>> {
        let old = self.file.replace(file);
        if old.is_none() {
            let open = shared.open_writers.fetch_add(1, Ordering::Relaxed) + 1;
            self.counted = Some(Arc::clone(&shared.open_writers));
            if open > shared.config.max_open_writers {
                shared.kick();
            }
        }
        old
    }

    /// Close the writer and hand its file to the caller (which queues it to be synced): the
    /// count goes down now, though the descriptor stays open until that sync.
    pub fn take(&mut self) -> Option<Arc<File>> {
        let file = self.file.take();
        self.uncount();
        file
    }

    /// Close the writer and drop this handle to it. The count goes down only after the handle
    /// is dropped: when no sync holds a clone (the syncer's own closes), the descriptor is
    /// already released, so the count never reads lower than the descriptors it counts.
    pub fn close(&mut self) {
        drop(self.file.take());
        self.uncount();
    }

    fn uncount(&mut self) {
        if let Some(counted) = self.counted.take() {
            counted.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Drop for WriterSlot {
    fn drop(&mut self) {
        self.close();
    }
}

#[derive(Debug)]
pub struct LogState {
    pub dir: PathBuf,
    /// Oldest first; the last one is the active (appended-to) segment.
    pub segments: VecDeque<Segment>,
    pub next_seq: Seq,
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes of output kept: record data from `first_seq()` on.
    pub output: u64,
    /// Bytes of output this log may keep (retention drops its oldest blocks beyond it).
    pub budget: u64,
    /// Retention moved the log's start inside its oldest segment: the first seq kept and the
    /// segment's output before it (still on disk until the whole segment goes).
    pub trim: Option<(Seq, u64)>,
    pub writer: WriterSlot,
    pub builder: Builder,
    /// Records appended since the syncer last took a snapshot.
    pub unsynced: u64,
    /// Files written to but not yet fdatasynced (sealed segments, closed writers).
    pub to_sync: Vec<Arc<File>>,
    /// Loaded at open, and the store's user has not said yet whether the log is live (it opens
    /// the live ones, then calls `Store::settle`): retention keeps its last segment meanwhile,
    /// which may be the active one of an agent still running under a holder.
    pub unsettled: bool,
    /// The agent directory gained or lost entries since the last sync.
    pub dir_dirty: bool,
    /// The agent directory itself is new (the logs directory must be synced too).
    pub dir_new: bool,
    pub last_append: Instant,
    /// The live feed; `None` once the log is closed.
    pub live: Option<broadcast::Sender<Batch>>,
    /// Set when an fdatasync of this log's data failed. After such a failure the kernel may
    /// have dropped the dirty pages, so a retry that "succeeds" would claim durability for data
    /// that is gone; the log refuses appends instead, loudly, until the daemon restarts.
    pub sync_failed: Option<String>,
    /// Records after the stored end that were lost for good (`from == next_seq`): the agent
    /// ended while the store refused them. Reads and follows report the range and continue
    /// after it; nothing is appended after it.
    pub dropped: Option<SeqRange>,
    /// Reused encode buffer.
    buf: Vec<u8>,
}

/// One agent's log.
#[derive(Debug)]
pub struct AgentLog {
    pub id: AgentId,
    pub state: Mutex<LogState>,
}

impl AgentLog {
    pub fn new(id: AgentId, state: LogState) -> AgentLog {
        AgentLog {
            id,
            state: Mutex::new(state),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, LogState> {
        // Every mutation keeps the state consistent before it can fail or panic (commit happens
        // after the write succeeded), so a poisoned lock still guards valid data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seq the next append must start with.
    pub fn next_seq(&self) -> Seq {
        self.lock().next_seq
    }

    /// Append consecutive records; see `Store::append`.
    pub fn append(&self, shared: &Shared, records: &[Record]) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut st = self.lock();
        if let Some(error) = &st.sync_failed {
            return Err(StoreError::io(
                format!("appending to log of agent {}", self.id),
                std::io::Error::other(format!("an earlier fdatasync failed: {error}")),
            ));
        }
        let mut expect = st.next_seq;
        for r in records {
            if r.seq != expect {
                return Err(StoreError::SeqMismatch {
                    agent: self.id,
                    expected: expect,
                    got: r.seq,
                });
            }
            if r.data.len() > MAX_DATA {
                return Err(StoreError::corrupt(
                    &st.dir,
                    format!(
                        "record {} has {} bytes (max {MAX_DATA})",
                        r.seq,
                        r.data.len()
                    ),
                ));
            }
            expect = expect.next();
        }
        st.roll_if_full(shared, first.seq)?;
        let file = st.writer(shared)?;
        let (active_end, seg_out) = st
            .active()
            .map_or((FILE_HEADER_LEN, 0), |s| (s.end, s.output));

        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let mut entries: Vec<Entry> = Vec::new();
        let mut out = 0u64;
        let mut block: Option<RawBlock> = None;
        for r in records {
            // A block never passes `MAX_RAW`: a huge record after others starts its own.
            if let Some(b) = block.take() {
                if b.raw_len(&buf) + r.data.len() + block::RECORD_OVERHEAD > block::MAX_RAW {
                    out += b.output;
                    b.finish(&mut buf);
                } else {
                    block = Some(b);
                }
            }
            let mut current = match block.take() {
                Some(b) => b,
                None => {
                    let offset = active_end + buf.len() as u64;
                    entries.extend(st.builder.note(r.seq, r.ts, offset, seg_out + out));
                    RawBlock::begin(&mut buf, r.seq, r.ts)
                }
            };
            current.push(&mut buf, r);
            if current.raw_len(&buf) >= block::APPEND_BLOCK {
                out += current.output;
                current.finish(&mut buf);
            } else {
                block = Some(current);
            }
        }
        if let Some(last) = block {
            out += last.output;
            last.finish(&mut buf);
        }
        let written = (&*file).write_all(&buf);
        let n = buf.len() as u64;
        // Kept for the next append, but not at the size of a rare huge batch: per-agent memory
        // stays small with thousands of agents.
        buf.clear();
        buf.shrink_to(KEEP_BUFFER);
        st.buf = buf;
        if let Err(e) = written {
            st.rollback(active_end, entries.first().copied());
            return Err(StoreError::io(
                format!("appending to log of agent {}", self.id),
                e,
            ));
        }

        // Commit: only now do readers see the new length.
        if let Some(seg) = st.segments.back_mut() {
            seg.len += n;
            seg.end += n;
            seg.output += out;
            seg.index.extend(&entries);
        }
        st.next_seq = expect;
        st.bytes += n;
        st.output += out;
        st.unsynced += records.len() as u64;
        st.last_append = Instant::now();
        shared.usage.fetch_add(n, Ordering::Relaxed);
        if let Some(live) = &st.live {
            // Cloning the records costs only when someone follows.
            if live.receiver_count() > 0 {
                let _ = live.send(Batch::from(records));
            }
        }
        let over_budget = st.output > st.budget;
        let kick = st.unsynced >= shared.config.sync_records;
        if over_budget {
            crate::retention::trim_agent(&mut st, shared);
        }
        drop(st);
        if kick || shared.usage.load(Ordering::Relaxed) > shared.config.global_budget {
            shared.kick();
        }
        Ok(())
    }

    /// Mark the log live: followers wait for appends instead of ending.
    pub fn open_live(&self, capacity: usize) {
        let mut st = self.lock();
        st.unsettled = false;
        if st.live.is_none() {
            st.live = Some(broadcast::channel(capacity.max(1)).0);
        }
    }

    /// No more appends: end followers after they drain, hand the writer to the syncer.
    pub fn close(&self, shared: &Shared) {
        let mut st = self.lock();
        st.live = None;
        st.unsettled = false;
        if let Some(file) = st.writer.take() {
            st.to_sync.push(file);
        }
        drop(st);
        // Its last segment is sealed now: worth packing.
        shared.pack_waker.kick();
    }
}

impl LogState {
    pub fn new(dir: PathBuf, budget: u64) -> LogState {
        LogState {
            dir,
            segments: VecDeque::new(),
            next_seq: Seq::FIRST,
            bytes: 0,
            output: 0,
            budget,
            trim: None,
            writer: WriterSlot::default(),
            builder: Builder::sparse(None),
            unsynced: 0,
            to_sync: Vec::new(),
            unsettled: false,
            dir_dirty: false,
            dir_new: false,
            last_append: Instant::now(),
            live: None,
            sync_failed: None,
            dropped: None,
            buf: Vec::new(),
        }
    }

    pub fn active(&self) -> Option<&Segment> {
        self.segments.back()
    }

    /// The first seq still kept.
    pub fn first_seq(&self) -> Seq {
        match (self.segments.front(), self.trim) {
            (None, _) => self.next_seq,
            (Some(_), Some((seq, _))) => seq,
            (Some(s), None) => s.first,
        }
    }

    /// The size at which this log's active segment is sealed: `segment_bytes`, but at most an
    /// eighth of the budget (and at least `MIN_SEGMENT`), so a small budget is not dwarfed by
    /// one segment waiting to fill.
    pub fn segment_limit(&self, shared: &Shared) -> u64 {
        shared
            .config
            .segment_bytes
            .min((self.budget / 8).max(MIN_SEGMENT))
    }

    /// Start a new segment at `next` when the active one is full (or there is none). Rolling
    /// only between appends keeps every append inside one file, so it is all-or-nothing.
    fn roll_if_full(&mut self, shared: &Shared, next: Seq) -> Result<(), StoreError> {
        let full = match self.active() {
            None => true,
            // A pack (or a format-1 segment migrated to one) is never appended to.
            Some(seg) if seg.kind == Kind::Packed => true,
            Some(seg) => seg.len >= self.segment_limit(shared) && seg.len > FILE_HEADER_LEN,
        };
        if !full {
            return Ok(());
        }
        if self.segments.is_empty() && !self.dir.exists() {
            crate::private_dir(&self.dir).map_err(|e| {
                StoreError::io(format!("creating log directory {}", self.dir.display()), e)
            })?;
            self.dir_new = true;
        }
        // Recovery verifies only the last two segments, which is sound only if nothing older is
        // ever unsynced. Older sealed segments still waiting for the syncer (it fell behind) are
        // therefore synced here, before a third segment can exist: rare backpressure on this
        // one agent's capture, never on others.
        if !self.to_sync.is_empty() {
            for file in std::mem::take(&mut self.to_sync) {
                if let Err(e) = file.sync_data() {
                    self.sync_failed = Some(e.to_string());
                    return Err(StoreError::io(
                        format!("syncing a sealed segment of {}", self.dir.display()),
                        e,
                    ));
                }
            }
        }
        let path = self.dir.join(segment::file_name(next, Kind::Raw));
        let file = segment::create(&path, next)
            .map_err(|e| StoreError::io(format!("creating segment {}", path.display()), e))?;
        if let Some(old) = self.writer.set(Arc::new(file), shared) {
            self.to_sync.push(old);
        }
        if let Some(seg) = self.segments.back_mut() {
            seg.sealed_at = SystemTime::now();
        }
        self.segments.push_back(Segment {
            first: next,
            path: path.into(),
            kind: Kind::Raw,
            len: FILE_HEADER_LEN,
            end: FILE_HEADER_LEN,
            output: 0,
            index: Arc::new(SegIndex::default()),
            pack_failed: false,
            sealed_at: SystemTime::now(),
        });
        self.bytes += FILE_HEADER_LEN;
        shared.usage.fetch_add(FILE_HEADER_LEN, Ordering::Relaxed);
        self.builder = Builder::sparse(None);
        self.dir_dirty = true;
        if self.segments.len() > 1 {
            shared.pack_waker.kick();
        }
        Ok(())
    }

    /// The writer for the active segment, reopened if an idle close or a failure dropped it.
    fn writer(&mut self, shared: &Shared) -> Result<Arc<File>, StoreError> {
        if let Some(file) = self.writer.file() {
            return Ok(file);
        }
        let seg = self
            .active()
            .ok_or_else(|| StoreError::corrupt(&self.dir, "log has no active segment"))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&seg.path)
            .map_err(|e| StoreError::io(format!("opening segment {}", seg.path.display()), e))?;
        // A previous append may have failed after a partial write whose rollback also failed:
        // cut back to the committed length before appending again.
        let meta_len = file
            .metadata()
            .map_err(|e| StoreError::io(format!("reading size of {}", seg.path.display()), e))?
            .len();
        if meta_len != seg.len {
            file.set_len(seg.len).map_err(|e| {
                StoreError::io(format!("truncating torn tail of {}", seg.path.display()), e)
            })?;
        }
        let file = Arc::new(file);
        self.writer.set(file.clone(), shared);
        Ok(file)
    }

    /// Undo a failed write: cut the file back to its committed length so no half record stays.
    /// If even that fails, drop the writer; the next append re-checks and truncates.
    fn rollback(&mut self, committed: u64, first_entry: Option<Entry>) {
        if let Some(file) = self.writer.file() {
            if file.set_len(committed).is_err() {
                self.writer.close();
            }
        }
        // Forget the index position noted for frames that were never committed.
        let last = self
            .active()
            .and_then(|s| s.index.offset_for_seq(Seq(u64::MAX)));
        if first_entry.is_some() {
            self.builder = Builder::sparse(last.map(|e| e.offset));
        }
    }
}
