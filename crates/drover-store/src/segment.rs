//! Segment files: naming, the file header, and reading blocks in order.
//!
//! A log is a directory of segments named by their first seq (20 digits):
//! - `<first>.seg`: the active (appended-to) segment, or a sealed one not packed yet: a 16-byte
//!   header (`b"DRVSEG02"`, then the first seq u64 LE) and raw blocks (see `block`), one or more
//!   per append. Only ever appended to, truncated back to a block boundary (failed append,
//!   recovery), or deleted whole.
//! - `<first>.pack`: a sealed segment rewritten off the capture path (see `pack`): the same
//!   header, zstd blocks of about 64 KiB of records each, then a block index (footer). Written
//!   to `<first>.pack.tmp`, fdatasynced, then renamed, so a `.pack` is always whole.
//! - A `.seg` starting `b"DRVSEG01"` is format 1 (frames, before blocks); it is migrated to a
//!   `.pack` when the store opens (see `migrate`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use drover_proto::Seq;

use crate::block::{self, Decoded, Header};
use crate::index::{Builder, Entry};

/// The file magic of a format-2 segment (raw or packed).
pub const FILE_MAGIC: &[u8; 8] = b"DRVSEG02";
/// Bytes before the first block.
pub const FILE_HEADER_LEN: u64 = 16;
const READ_CHUNK: usize = 64 * 1024;

/// Which of the two format-2 files a segment is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `.seg`: raw blocks, appendable.
    Raw,
    /// `.pack`: compressed blocks and a footer, immutable.
    Packed,
}

/// The on-disk format a segment header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// The file name of the segment starting at `first`.
pub fn file_name(first: Seq, kind: Kind) -> String {
    match kind {
        Kind::Raw => format!("{:020}.seg", first.0),
        Kind::Packed => format!("{:020}.pack", first.0),
    }
}

/// The first seq and kind named by a segment file name, if it is one.
pub fn parse_name(name: &str) -> Option<(Seq, Kind)> {
    let (digits, kind) = if let Some(d) = name.strip_suffix(".seg") {
        (d, Kind::Raw)
    } else {
        (name.strip_suffix(".pack")?, Kind::Packed)
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(|s| (Seq(s), kind))
}

/// The 16-byte file header for `first`.
pub fn file_header(first: Seq) -> [u8; FILE_HEADER_LEN as usize] {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    header[..8].copy_from_slice(FILE_MAGIC);
    header[8..].copy_from_slice(&first.0.to_le_bytes());
    header
}

/// Create a new raw segment file with its header; fails if it exists. A header that cannot be
/// written (a full disk: the empty file needed no block) takes its file with it, so the next
/// try, once the disk has room, does not find it in the way.
pub fn create(path: &Path, first: Seq) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .mode(crate::PRIVATE_FILE)
        .open(path)?;
    if let Err(e) = file.write_all(&file_header(first)) {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(file)
}

/// The format of a file whose header is valid for `first`; `None` if it is damaged or short.
pub fn version(file: &File, first: Seq) -> io::Result<Option<Version>> {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) if header[8..] != first.0.to_le_bytes() => Ok(None),
        Ok(()) if &header[..8] == FILE_MAGIC => Ok(Some(Version::V2)),
        Ok(()) if &header[..8] == crate::v1::FILE_MAGIC => Ok(Some(Version::V1)),
        Ok(()) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// One step of a [`BlockReader`].
#[derive(Debug)]
pub enum Step<'a> {
    /// A valid block at this file offset, with its raw (decompressed) payload.
    Block(u64, Header, &'a [u8]),
    /// The readable range ended on a block boundary.
    End,
    /// The range ends inside a block starting at this offset (a torn write).
    Torn(u64),
    /// Not a valid block at this offset.
    Bad(u64, &'static str),
}

/// Reads blocks sequentially from `pos` to `end` with positioned reads (64 KiB at a time, or a
/// whole block when larger), so memory stays bounded (by one block) and no shared file cursor
/// is involved.
#[derive(Debug)]
pub struct BlockReader {
    file: File,
    buf: Vec<u8>,
    /// Index in `buf` of the next unread byte.
    start: usize,
    /// File offset of `buf[0]`.
    buf_pos: u64,
    end: u64,
    /// Decompressed payload of the last zstd block, and the context that decompressed it.
    scratch: block::Scratch,
}

impl BlockReader {
    pub fn open(path: &Path, pos: u64, end: u64) -> io::Result<BlockReader> {
        Ok(BlockReader {
            file: File::open(path)?,
            buf: Vec::new(),
            start: 0,
            buf_pos: pos,
            end,
            scratch: block::Scratch::default(),
        })
    }

    pub fn next(&mut self) -> io::Result<Step<'_>> {
        loop {
            let offset = self.buf_pos + self.start as u64;
            let header = match block::decode(&self.buf[self.start..]) {
                Decoded::Block(h) => h,
                Decoded::Bad(why) => return Ok(Step::Bad(offset, why)),
                Decoded::Short(need) => {
                    let buf_end = self.buf_pos + self.buf.len() as u64;
                    if buf_end >= self.end {
                        return Ok(if self.start == self.buf.len() {
                            Step::End
                        } else {
                            Step::Torn(offset)
                        });
                    }
                    self.refill(need)?;
                    continue;
                }
            };
            let stored_start = self.start + block::HEADER_LEN;
            self.start += header.block_len();
            let stored = &self.buf[stored_start..self.start];
            return Ok(match block::payload(&header, stored, &mut self.scratch) {
                Ok(payload) => Step::Block(offset, header, payload),
                Err(why) => Step::Bad(offset, why),
            });
        }
    }

    /// Keep the unread bytes and read at least enough for a block of `need` bytes.
    fn refill(&mut self, need: usize) -> io::Result<()> {
        self.buf.drain(..self.start);
        self.buf_pos += self.start as u64;
        self.start = 0;
        let have = self.buf.len();
        let file_pos = self.buf_pos + have as u64;
        let want = need.max(have + READ_CHUNK) - have;
        let want = want.min((self.end - file_pos) as usize);
        self.buf.resize(have + want, 0);
        let mut filled = 0;
        while filled < want {
            let n = self
                .file
                .read_at(&mut self.buf[have + filled..], file_pos + filled as u64)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        self.buf.truncate(have + filled);
        if filled < want {
            // The file is shorter than the range we were told is readable.
            self.end = file_pos + filled as u64;
        }
        Ok(())
    }
}

/// The result of scanning a segment's blocks.
#[derive(Debug, Default)]
pub struct Scan {
    /// Offset of the end of the last valid block.
    pub valid_len: u64,
    /// The seq after the last valid block.
    pub next_seq: Seq,
    /// Index entries for the valid part.
    pub entries: Vec<Entry>,
    /// Record data bytes in the valid part.
    pub output: u64,
    /// Why the scan stopped before `end`, if it did.
    pub problem: Option<String>,
}

/// Scan blocks from the header to `end`, verifying every block, its records and seq
/// continuity; index entries as `builder` spaces them.
pub fn scan(path: &Path, first: Seq, end: u64, mut builder: Builder) -> io::Result<Scan> {
    let mut reader = BlockReader::open(path, FILE_HEADER_LEN, end)?;
    let mut scan = Scan {
        valid_len: FILE_HEADER_LEN,
        next_seq: first,
        ..Scan::default()
    };
    loop {
        match reader.next()? {
            Step::Block(offset, h, payload) => {
                if h.first_seq != scan.next_seq {
                    scan.problem = Some(format!(
                        "seq {} at offset {offset}, expected {}",
                        h.first_seq, scan.next_seq
                    ));
                    break;
                }
                let mut output = 0u64;
                let mut bad = None;
                for r in block::Records::new(&h, payload) {
                    match r {
                        Ok(r) => output += r.data.len() as u64,
                        Err(why) => bad = Some(why),
                    }
                }
                if let Some(why) = bad {
                    scan.problem = Some(format!("{why} at offset {offset}"));
                    break;
                }
                scan.entries
                    .extend(builder.note(h.first_seq, h.first_ts, offset, scan.output));
                scan.output += output;
                scan.valid_len = offset + h.block_len() as u64;
                scan.next_seq = h.end_seq();
            }
            Step::End => break,
            Step::Torn(offset) => {
                scan.problem = Some(format!("torn block at offset {offset}"));
                break;
            }
            Step::Bad(offset, why) => {
                scan.problem = Some(format!("{why} at offset {offset}"));
                break;
            }
        }
    }
    Ok(scan)
}
