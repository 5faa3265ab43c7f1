//! Packing: sealed raw segments are rewritten as compressed, immutable `.pack` files, off the
//! capture path, by the `drover-store-pack` thread.
//!
//! A `.pack` is the segment header, zstd blocks of about `StoreConfig::pack_block` bytes of
//! records each, then a footer: one index entry per block (`seq u64, ts i64, offset u64,
//! out u64`, 32 bytes each) and a 32-byte trailer (`end_seq u64, output u64, entries u32,
//! crc32 u32` of the entries and those 20 bytes, then `b"DRVPIDX1"`). Opening a store reads only
//! footers, never whole packs.
//!
//! Crash safety: the pack is written to `logs/.tmp/<agent>-<first>.pack` and fdatasynced,
//! renamed to `logs/<agent>/<first>.pack` (under the log lock, where the segment list changes;
//! so removing an agent, which deletes its directory under that lock, never races an install),
//! the directory synced, and only then `<first>.seg` removed. Opening the store empties
//! `logs/.tmp` and, when both files of one segment exist, deletes the `.seg`. A reader that listed the `.seg` before the swap and opens it after
//! gets `NotFound` and retries on a fresh listing (see `read`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use drover_proto::Seq;

use crate::block::{self, Codec, Payload, RecordRef};
use crate::index::{Builder, Entry, SegIndex};
use crate::log::AgentLog;
use crate::segment::{self, BlockReader, Kind, Step, FILE_HEADER_LEN};
use crate::{Shared, StoreError};

/// The packer's scratch directory under `logs/` (not an agent id, so never read as a log).
pub const TMP_DIR: &str = ".tmp";
const TRAILER_LEN: u64 = 32;
const ENTRY_LEN: u64 = 32;
const TRAILER_MAGIC: &[u8; 8] = b"DRVPIDX1";
/// Encoded blocks are written to the file in chunks of about this size.
const WRITE_CHUNK: usize = 1024 * 1024;

/// What a finished pack holds.
#[derive(Debug)]
pub struct Packed {
    /// File length.
    pub len: u64,
    /// Where the blocks end (the footer starts).
    pub end: u64,
    pub end_seq: Seq,
    pub output: u64,
    pub entries: Vec<Entry>,
}

/// Writes a `.pack` file record by record.
#[derive(Debug)]
pub struct PackWriter {
    file: File,
    buf: Vec<u8>,
    payload: Payload,
    entries: Vec<Entry>,
    builder: Builder,
    /// File offset of `buf[0]`.
    offset: u64,
    output: u64,
    next: Seq,
    compressor: block::Compressor,
    /// The block being written, compressed (reused).
    stored: Vec<u8>,
    block: usize,
}

impl PackWriter {
    /// Start `path` (created or truncated) for a segment beginning at `first`.
    pub fn create(path: &Path, first: Seq, level: i32, block: usize) -> io::Result<PackWriter> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::PRIVATE_FILE)
            .open(path)?;
        Ok(PackWriter {
            file,
            buf: segment::file_header(first).to_vec(),
            payload: Payload::default(),
            entries: Vec::new(),
            builder: Builder::dense(),
            offset: 0,
            output: 0,
            next: first,
            compressor: block::Compressor::new(level)?,
            stored: Vec::new(),
            block: block.clamp(1, block::APPEND_BLOCK),
        })
    }

    /// Add the next record (seqs must be consecutive from the segment's first).
    pub fn push(&mut self, r: RecordRef<'_>) -> io::Result<()> {
        if r.seq != self.next {
            return Err(io::Error::other(format!(
                "record {} where {} was expected",
                r.seq, self.next
            )));
        }
        // A block never passes `MAX_RAW`: a huge record after others starts its own.
        if self.payload.buf.len() + r.data.len() + crate::block::RECORD_OVERHEAD
            > crate::block::MAX_RAW
        {
            self.seal_block()?;
        }
        self.payload.push(r.seq, r.ts, r.stream, r.partial, r.data);
        self.next = r.seq.next();
        if self.payload.buf.len() >= self.block {
            self.seal_block()?;
        }
        Ok(())
    }

    fn seal_block(&mut self) -> io::Result<()> {
        if self.payload.count == 0 {
            return Ok(());
        }
        let at = self.offset + self.buf.len() as u64;
        let p = &self.payload;
        self.entries
            .extend(self.builder.note(p.first_seq, p.first_ts, at, self.output));
        self.compressor.compress(&p.buf, &mut self.stored)?;
        // Incompressible data stays raw rather than growing.
        if self.stored.len() < p.buf.len() {
            block::write(&mut self.buf, p, Codec::Zstd, Some(&self.stored));
        } else {
            block::write(&mut self.buf, p, Codec::Raw, None);
        }
        self.output += p.output;
        self.payload.clear();
        if self.buf.len() >= WRITE_CHUNK {
            self.file.write_all(&self.buf)?;
            self.offset += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write the last block and the footer, and fdatasync.
    pub fn finish(mut self) -> io::Result<Packed> {
        self.seal_block()?;
        let end = self.offset + self.buf.len() as u64;
        let footer_start = self.buf.len();
        for e in &self.entries {
            self.buf.extend_from_slice(&e.seq.0.to_le_bytes());
            self.buf.extend_from_slice(&e.ts.to_le_bytes());
            self.buf.extend_from_slice(&e.offset.to_le_bytes());
            self.buf.extend_from_slice(&e.out.to_le_bytes());
        }
        self.buf.extend_from_slice(&self.next.0.to_le_bytes());
        self.buf.extend_from_slice(&self.output.to_le_bytes());
        self.buf
            .extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let crc = crc32fast::hash(&self.buf[footer_start..]);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(TRAILER_MAGIC);
        self.file.write_all(&self.buf)?;
        self.file.sync_data()?;
        let len = self.offset + self.buf.len() as u64;
        Ok(Packed {
            len,
            end,
            end_seq: self.next,
            output: self.output,
            entries: self.entries,
        })
    }
}

/// Read a pack's footer. `Ok(Err(why))` when the footer is damaged (the caller scans blocks).
pub fn read_footer(path: &Path) -> io::Result<Result<Packed, &'static str>> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    if len < FILE_HEADER_LEN + TRAILER_LEN {
        return Ok(Err("pack too short for a footer"));
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.read_exact_at(&mut trailer, len - TRAILER_LEN)?;
    if &trailer[24..] != TRAILER_MAGIC {
        return Ok(Err("bad pack footer magic"));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&trailer[at..at + 8]);
        u64::from_le_bytes(b)
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&trailer[16..20]);
    let n = u64::from(u32::from_le_bytes(n));
    let footer_len = n * ENTRY_LEN + TRAILER_LEN;
    if footer_len > len - FILE_HEADER_LEN {
        return Ok(Err("pack footer longer than the file"));
    }
    let end = len - footer_len;
    let mut footer = vec![0u8; (footer_len - 12) as usize];
    file.read_exact_at(&mut footer, end)?;
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&trailer[20..24]);
    if crc32fast::hash(&footer) != u32::from_le_bytes(crc) {
        return Ok(Err("pack footer crc mismatch"));
    }
    let entries = footer[..(n * ENTRY_LEN) as usize]
        .chunks_exact(ENTRY_LEN as usize)
        .map(|c| {
            let w = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&c[at..at + 8]);
                u64::from_le_bytes(b)
            };
            Entry {
                seq: Seq(w(0)),
                ts: w(8) as i64,
                offset: w(16),
                out: w(24),
            }
        })
        .collect();
    Ok(Ok(Packed {
        len,
        end,
        end_seq: Seq(word(0)),
        output: word(8),
        entries,
    }))
}

/// The temporary name a migration writes a pack under (`recover` deletes leftovers).
pub fn tmp_path(dir: &Path, first: Seq) -> PathBuf {
    dir.join(format!("{}.tmp", segment::file_name(first, Kind::Packed)))
}

/// Rewrite the raw segment `src` (blocks up to `end`, records `[first, until)`) as a pack at
/// `tmp`. Fails on any damage: a damaged segment stays raw, where reads report it.
pub fn pack_raw(
    src: &Path,
    end: u64,
    first: Seq,
    until: Seq,
    tmp: &Path,
    shared: &Shared,
) -> Result<Packed, StoreError> {
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    let mut writer = PackWriter::create(
        tmp,
        first,
        shared.config.pack_level,
        shared.config.pack_block,
    )
    .map_err(|e| StoreError::io(ctx("creating", tmp), e))?;
    let mut reader = BlockReader::open(src, FILE_HEADER_LEN, end)
        .map_err(|e| StoreError::io(ctx("opening", src), e))?;
    loop {
        if shared.shutdown.load(Ordering::Relaxed) {
            return Err(StoreError::io(
                ctx("packing", src),
                io::Error::other("store closing"),
            ));
        }
        match reader
            .next()
            .map_err(|e| StoreError::io(ctx("reading", src), e))?
        {
            Step::Block(_, h, payload) => {
                for r in block::Records::new(&h, payload) {
                    let r = r.map_err(|why| StoreError::corrupt(src, why))?;
                    writer
                        .push(r)
                        .map_err(|e| StoreError::io(ctx("writing", tmp), e))?;
                }
            }
            Step::End => break,
            Step::Torn(at) => return Err(StoreError::corrupt(src, format!("torn block at {at}"))),
            Step::Bad(at, why) => return Err(StoreError::corrupt(src, format!("{why} at {at}"))),
        }
    }
    let packed = writer
        .finish()
        .map_err(|e| StoreError::io(ctx("writing", tmp), e))?;
    if packed.end_seq != until {
        return Err(StoreError::corrupt(
            src,
            format!("ends at seq {}, expected {until}", packed.end_seq),
        ));
    }
    Ok(packed)
}

/// The packer loop; returns when `shared.shutdown` is set.
pub fn run(shared: Arc<Shared>) {
    loop {
        let stop = shared
            .pack_waker
            .wait(&shared.shutdown, shared.config.pack_interval);
        if stop {
            return;
        }
        for log in shared.all_logs() {
            while pack_one(&shared, &log) {
                if shared.shutdown.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    }
}

/// Pack the log's oldest sealed raw segment, if it has one; true when one was packed.
pub fn pack_one(shared: &Shared, log: &AgentLog) -> bool {
    let (first, src, end, len, until, dir, was_last) = {
        let st = log.lock();
        // A closed log's last segment is sealed too, once nothing has appended to it for a
        // while (appends to a closed log are rare: a re-attached agent before its log reopens;
        // packing it each time would leave a trail of tiny segments).
        let closed = st.live.is_none() && st.last_append.elapsed() >= shared.config.pack_interval;
        let last = st.segments.len().saturating_sub(1);
        let Some((i, seg)) = st.segments.iter().enumerate().find(|(i, s)| {
            s.kind == Kind::Raw && !s.pack_failed && (*i < last || closed) && s.output > 0
        }) else {
            return false;
        };
        let until = st.segments.get(i + 1).map_or(st.next_seq, |n| n.first);
        (
            seg.first,
            seg.path.clone(),
            seg.end,
            seg.len,
            until,
            st.dir.clone(),
            i == last,
        )
    };
    let tmp = shared.logs_dir.join(TMP_DIR).join(format!(
        "{}-{}",
        log.id,
        segment::file_name(first, Kind::Packed)
    ));
    let packed = match pack_raw(&src, end, first, until, &tmp, shared) {
        Ok(p) => p,
        Err(error) => {
            let _ = fs::remove_file(&tmp);
            let gone = matches!(&error, StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound);
            // Closing, or the log was removed meanwhile: nothing to report.
            if shared.shutdown.load(Ordering::Relaxed) || gone {
                return false;
            }
            tracing::warn!(agent = %log.id, path = %src.display(), %error, "could not pack a sealed segment; it stays raw");
            let mut st = log.lock();
            if let Some(seg) = st.segments.iter_mut().find(|s| s.first == first) {
                // Damage stays where reads report it; a full disk is retried next round.
                seg.pack_failed = !matches!(error, StoreError::DiskFull { .. });
            }
            return false;
        }
    };
    let dest = dir.join(segment::file_name(first, Kind::Packed));
    {
        let mut st = log.lock();
        let last = st.segments.len().saturating_sub(1);
        let still = st
            .segments
            .iter()
            .position(|s| s.first == first && s.kind == Kind::Raw && s.len == len);
        let unchanged = match still {
            Some(i) if was_last => i == last && st.live.is_none() && st.next_seq == until,
            Some(_) => true,
            None => false,
        };
        let Some(i) = still.filter(|_| unchanged) else {
            drop(st);
            let _ = fs::remove_file(&tmp);
            return false;
        };
        if let Err(error) = fs::rename(&tmp, &dest) {
            drop(st);
            let _ = fs::remove_file(&tmp);
            tracing::warn!(agent = %log.id, path = %dest.display(), %error, "could not install a pack");
            return false;
        }
        if was_last {
            // The file it appended to is about to go; a later append starts a new segment.
            st.writer.close();
        }
        let seg = &mut st.segments[i];
        seg.kind = Kind::Packed;
        seg.path = dest.into();
        seg.end = packed.end;
        seg.len = packed.len;
        seg.index = Arc::new(SegIndex::new(packed.entries));
        st.bytes = st.bytes - len + packed.len;
        st.dir_dirty = true;
        shared.usage.fetch_sub(len, Ordering::Relaxed);
        shared.usage.fetch_add(packed.len, Ordering::Relaxed);
    }
    // The rename must be durable before the raw file goes (else a power loss could leave
    // neither); the removal itself is synced with the directory by the syncer.
    if let Err(error) = File::open(&dir).and_then(|d| d.sync_all()) {
        tracing::warn!(agent = %log.id, %error, "could not sync a log directory after packing");
        return true;
    }
    if let Err(error) = fs::remove_file(&src) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(agent = %log.id, path = %src.display(), %error, "could not remove a packed segment's raw file");
        }
    }
    true
}
