//! Record framing inside a segment file.
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

use drover_proto::{Record, Seq, StreamKind};

/// Bytes before a frame's data.
pub const HEADER_LEN: usize = 28;
const MAGIC: [u8; 2] = [0xD7, 0x5E];
/// Largest data a frame may carry; bigger lengths are treated as corruption.
pub const MAX_DATA: usize = 16 * 1024 * 1024;

/// Append a record's frame to `out`.
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
    /// Bytes this frame occupies.
    pub fn len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// An owned record.
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
