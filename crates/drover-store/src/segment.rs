//! Segment files: naming, the file header, and reading frames in order.
//!
//! A segment is `logs/<agent_id>/<first_seq as 20 digits>.seg`: a 16-byte header
//! (`b"DRVSEG01"` then the first seq, u64 little-endian) followed by frames (see `frame`) with
//! consecutive seqs starting at the first seq. Files are only ever appended to, truncated back to
//! a frame boundary (failed append, recovery), or deleted whole (retention, removal).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use drover_proto::Seq;

use crate::frame::{self, Decoded, Frame};
use crate::index::{Builder, Entry};

const FILE_MAGIC: &[u8; 8] = b"DRVSEG01";
/// Bytes before the first frame.
pub const FILE_HEADER_LEN: u64 = 16;
const READ_CHUNK: usize = 64 * 1024;

/// The file name of the segment starting at `first`.
pub fn file_name(first: Seq) -> String {
    format!("{:020}.seg", first.0)
}

/// The first seq named by a segment file name, if it is one.
pub fn parse_name(name: &str) -> Option<Seq> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Seq)
}

/// Create a new segment file with its header; fails if it exists.
pub fn create(path: &Path, first: Seq) -> io::Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create_new(true)
        .open(path)?;
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    header[..8].copy_from_slice(FILE_MAGIC);
    header[8..].copy_from_slice(&first.0.to_le_bytes());
    file.write_all(&header)?;
    Ok(file)
}

/// Whether the file starts with a valid header for `first`.
pub fn header_ok(file: &File, first: Seq) -> io::Result<bool> {
    let mut header = [0u8; FILE_HEADER_LEN as usize];
    match file.read_exact_at(&mut header, 0) {
        Ok(()) => Ok(&header[..8] == FILE_MAGIC && header[8..] == first.0.to_le_bytes()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// One step of a [`FrameReader`].
#[derive(Debug)]
pub enum Step<'a> {
    /// A valid frame at this file offset.
    Frame(u64, Frame<'a>),
    /// The readable range ended on a frame boundary.
    End,
    /// The range ends inside a frame starting at this offset (a torn write).
    Torn(u64),
    /// Not a valid frame at this offset.
    Bad(u64, &'static str),
}

/// Reads frames sequentially from `pos` to `end` with positioned reads in 64 KiB chunks, so
/// memory stays bounded and no shared file cursor is involved.
#[derive(Debug)]
pub struct FrameReader {
    file: File,
    buf: Vec<u8>,
    /// Index in `buf` of the next unread byte.
    start: usize,
    /// File offset of `buf[0]`.
    buf_pos: u64,
    end: u64,
}

impl FrameReader {
    pub fn open(path: &Path, pos: u64, end: u64) -> io::Result<FrameReader> {
        Ok(FrameReader::new(File::open(path)?, pos, end))
    }

    pub fn new(file: File, pos: u64, end: u64) -> FrameReader {
        FrameReader {
            file,
            buf: Vec::new(),
            start: 0,
            buf_pos: pos,
            end,
        }
    }

    pub fn next(&mut self) -> io::Result<Step<'_>> {
        loop {
            let offset = self.buf_pos + self.start as u64;
            let (seq, ts, stream, partial, len) = match frame::decode(&self.buf[self.start..]) {
                Decoded::Frame(f) => (f.seq, f.ts, f.stream, f.partial, f.data.len()),
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
            let data_start = self.start + frame::HEADER_LEN;
            self.start = data_start + len;
            let data = &self.buf[data_start..data_start + len];
            let frame = Frame {
                seq,
                ts,
                stream,
                partial,
                data,
            };
            return Ok(Step::Frame(offset, frame));
        }
    }

    /// Keep the unread bytes and read at least enough for a frame of `need` bytes.
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

/// The result of scanning a whole segment.
#[derive(Debug)]
pub struct Scan {
    /// Length up to the end of the last valid frame.
    pub valid_len: u64,
    /// The seq after the last valid frame.
    pub next_seq: Seq,
    /// Index entries for the valid part.
    pub entries: Vec<Entry>,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<String>,
}

/// Scan a segment from its header to `end`, verifying every frame and seq continuity.
pub fn scan(path: &Path, first: Seq, end: u64) -> io::Result<Scan> {
    let mut reader = FrameReader::open(path, FILE_HEADER_LEN, end)?;
    let mut builder = Builder::default();
    let mut scan = Scan {
        valid_len: FILE_HEADER_LEN,
        next_seq: first,
        entries: Vec::new(),
        problem: None,
    };
    loop {
        match reader.next()? {
            Step::Frame(offset, f) => {
                if f.seq != scan.next_seq {
                    scan.problem = Some(format!(
                        "seq {} at offset {offset}, expected {}",
                        f.seq, scan.next_seq
                    ));
                    break;
                }
                scan.entries.extend(builder.note(f.seq, f.ts, offset));
                scan.valid_len = offset + f.len() as u64;
                scan.next_seq = f.seq.next();
            }
            Step::End => break,
            Step::Torn(offset) => {
                scan.problem = Some(format!("torn frame at offset {offset}"));
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
