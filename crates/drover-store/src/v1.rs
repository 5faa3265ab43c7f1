//! Format 1 (`DRVSEG01`, before blocks): kept only to read and migrate segments written by
//! earlier versions (see `migrate`). Record framing inside such a segment:
//!
//! ```text
//! offset size  field
//!  0     2     magic 0xD7 0x5E
//!  2     1     stream: 0 = stdout, 1 = stderr
//!  3     1     flags: bit 0 = partial; other bits must be 0
//!  4     4     len: data length, u32 little-endian (at most MAX_DATA)
//!  8     4     crc32 (IEEE) of bytes 0..8 and 12..28+len: every byte of the frame but itself
//! 12     8     seq, u64 little-endian
//! 20     8     ts, i64 little-endian (unix nanoseconds)
//! 28     len   data
//! ```
//! A frame that is short, has a bad magic, unknown flags or a crc mismatch ends the valid part
//! of a segment: recovery truncates there, a reader reports corruption.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[cfg(test)]
use drover_proto::Record;
use drover_proto::{Seq, StreamKind};

/// The file magic of a format-1 segment.
pub const FILE_MAGIC: &[u8; 8] = b"DRVSEG01";
const READ_CHUNK: usize = 64 * 1024;

/// Bytes before a frame's data.
pub const HEADER_LEN: usize = 28;
const MAGIC: [u8; 2] = [0xD7, 0x5E];
/// Largest data a frame may carry; bigger lengths are treated as corruption.
pub const MAX_DATA: usize = crate::block::MAX_DATA;

/// Append a record's frame to `out` (the format-1 writer, kept for the migration tests).
#[cfg(test)]
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(match record.stream {
        StreamKind::Stdout => 0,
        StreamKind::Stderr => 1,
    });
    out.push(u8::from(record.partial));
    // Data longer than u32 cannot come from the capture path (records are <= 64 KiB); the
    // store refuses such records before encoding (see `log::validate`).
    out.extend_from_slice(&(record.data.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.seq.0.to_le_bytes());
    out.extend_from_slice(&record.ts.to_le_bytes());
    out.extend_from_slice(&record.data);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..start + 8]);
    hasher.update(&out[start + 12..]);
    let crc = hasher.finalize();
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
}

/// A checked frame borrowed from a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub seq: Seq,
    pub ts: i64,
    pub stream: StreamKind,
    pub partial: bool,
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// An owned record.
    #[cfg(test)]
    pub fn to_record(self) -> Record {
        Record {
            seq: self.seq,
            ts: self.ts,
            stream: self.stream,
            data: self.data.to_vec(),
            partial: self.partial,
        }
    }
}

/// What sits at the start of a buffer.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// A whole, valid frame.
    Frame(Frame<'a>),
    /// The buffer ends inside a frame of this total length (read more, or a torn tail).
    Short(usize),
    /// Not a valid frame.
    Bad(&'static str),
}

/// Decode and verify the frame at the start of `buf`.
pub fn decode(buf: &[u8]) -> Decoded<'_> {
    if buf.len() < HEADER_LEN {
        return Decoded::Short(HEADER_LEN);
    }
    if buf[0..2] != MAGIC {
        return Decoded::Bad("bad frame magic");
    }
    let stream = match buf[2] {
        0 => StreamKind::Stdout,
        1 => StreamKind::Stderr,
        _ => return Decoded::Bad("bad stream byte"),
    };
    if buf[3] & !1 != 0 {
        return Decoded::Bad("unknown flags");
    }
    let len = u32_at(buf, 4) as usize;
    if len > MAX_DATA {
        return Decoded::Bad("frame length too large");
    }
    let total = HEADER_LEN + len;
    if buf.len() < total {
        return Decoded::Short(total);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[0..8]);
    hasher.update(&buf[12..total]);
    if hasher.finalize() != u32_at(buf, 8) {
        return Decoded::Bad("crc mismatch");
    }
    Decoded::Frame(Frame {
        seq: Seq(u64_at(buf, 12)),
        ts: u64_at(buf, 20) as i64,
        stream,
        partial: buf[3] & 1 == 1,
        data: &buf[HEADER_LEN..total],
    })
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
            let (seq, ts, stream, partial, len) = match decode(&self.buf[self.start..]) {
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
            let data_start = self.start + HEADER_LEN;
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

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let record = Record {
            seq: Seq(42),
            ts: -7,
            stream: StreamKind::Stderr,
            data: b"hello\n".to_vec(),
            partial: true,
        };
        let mut buf = Vec::new();
        encode(&record, &mut buf);
        match decode(&buf) {
            Decoded::Frame(f) => assert_eq!(f.to_record(), record),
            other => panic!("unexpected {other:?}"),
        }
        for byte in 0..buf.len() {
            let mut bad = buf.clone();
            bad[byte] ^= 0x10;
            assert!(!matches!(decode(&bad), Decoded::Frame(_)), "flip at {byte}");
        }
        assert!(matches!(decode(&buf[..buf.len() - 1]), Decoded::Short(_)));
    }
}
