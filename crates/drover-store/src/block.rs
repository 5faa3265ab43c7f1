//! Blocks: the unit a segment (format 2) is made of.
//!
//! ```text
//! offset size  field
//!  0     2     magic 0xB7 0x0C
//!  2     1     codec: 0 = raw, 1 = zstd
//!  3     1     reserved, 0
//!  4     4     stored payload length, u32 LE (compressed length for zstd)
//!  8     4     raw payload length, u32 LE (at most MAX_RAW)
//! 12     4     record count, u32 LE (at least 1)
//! 16     8     seq of the first record, u64 LE (the others follow consecutively)
//! 24     8     ts of the first record, i64 LE (unix ns)
//! 32     4     crc32 (IEEE) of bytes 0..32 and the stored payload
//! 36     ...   stored payload
//! ```
//! The raw payload is the records one after another, each
//! `varint(len << 2 | partial << 1 | stream)`, `zigzag varint(ts - previous ts)` (the first
//! record's previous ts is the header's), then `len` data bytes. So a record costs 2–4 bytes
//! beyond its data (seq is implicit, ts a delta), and the 36-byte header is shared by every
//! record of the block. One checksum covers the block; a block that is short, has a bad magic,
//! an unknown codec or a crc mismatch ends the valid part of a segment.

use drover_proto::{Record, Seq, StreamKind};

use crate::varint;

/// Bytes before a block's payload.
pub const HEADER_LEN: usize = 36;
const MAGIC: [u8; 2] = [0xB7, 0x0C];
/// Largest record data a block may carry (a capture record is at most 64 KiB by default).
pub const MAX_DATA: usize = 16 * 1024 * 1024;
/// Largest raw payload: one maximal record and its varints, or many smaller ones. Appends start
/// a new block past `APPEND_BLOCK` bytes, packing past `PACK_BLOCK`, so only a single huge
/// record comes near this.
pub const MAX_RAW: usize = MAX_DATA + 64 * 1024;
/// Most bytes a record adds to a raw payload besides its data (its varints and flags): a
/// record is put in a block only if the payload then stays within `MAX_RAW`.
pub const RECORD_OVERHEAD: usize = 64;
/// An append batch is split into blocks of about this many raw bytes.
pub const APPEND_BLOCK: usize = 1024 * 1024;

/// How a block's payload is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Raw,
    Zstd,
}

/// A block's header, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub codec: Codec,
    pub stored_len: usize,
    pub raw_len: usize,
    pub count: u32,
    pub first_seq: Seq,
    pub first_ts: i64,
}

impl Header {
    /// Bytes the whole block occupies.
    pub fn block_len(&self) -> usize {
        HEADER_LEN + self.stored_len
    }

    /// The seq after the block's last record.
    pub fn end_seq(&self) -> Seq {
        Seq(self.first_seq.0 + u64::from(self.count))
    }
}

/// Encodes records into one raw payload.
#[derive(Debug, Default)]
pub struct Payload {
    pub buf: Vec<u8>,
    pub count: u32,
    pub first_seq: Seq,
    pub first_ts: i64,
    last_ts: i64,
    /// Record data bytes in the payload.
    pub output: u64,
}

impl Payload {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.output = 0;
    }

    pub fn push(&mut self, seq: Seq, ts: i64, stream: StreamKind, partial: bool, data: &[u8]) {
        if self.count == 0 {
            self.first_seq = seq;
            self.first_ts = ts;
            self.last_ts = ts;
        }
        put_record(
            &mut self.buf,
            ts.wrapping_sub(self.last_ts),
            stream,
            partial,
            data,
        );
        self.last_ts = ts;
        self.count += 1;
        self.output += data.len() as u64;
    }

    #[cfg(test)]
    pub fn push_record(&mut self, r: &Record) {
        self.push(r.seq, r.ts, r.stream, r.partial, &r.data);
    }
}

/// One record's encoding in a payload.
fn put_record(out: &mut Vec<u8>, delta: i64, stream: StreamKind, partial: bool, data: &[u8]) {
    let tag = (data.len() as u64) << 2
        | u64::from(partial) << 1
        | u64::from(stream == StreamKind::Stderr);
    varint::put(out, tag);
    varint::put(out, varint::zigzag(delta));
    out.extend_from_slice(data);
}

/// A raw block encoded in place at the end of a caller's buffer (the append path: one copy of
/// each record, straight into what `write(2)` gets).
#[derive(Debug)]
pub struct RawBlock {
    start: usize,
    count: u32,
    first_seq: Seq,
    first_ts: i64,
    last_ts: i64,
    /// Record data bytes in the block.
    pub output: u64,
}

impl RawBlock {
    /// Start a block at the end of `out` (its header is filled in by `finish`).
    pub fn begin(out: &mut Vec<u8>, first_seq: Seq, first_ts: i64) -> RawBlock {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        RawBlock {
            start,
            count: 0,
            first_seq,
            first_ts,
            last_ts: first_ts,
            output: 0,
        }
    }

    pub fn push(&mut self, out: &mut Vec<u8>, r: &Record) {
        put_record(
            out,
            r.ts.wrapping_sub(self.last_ts),
            r.stream,
            r.partial,
            &r.data,
        );
        self.last_ts = r.ts;
        self.count += 1;
        self.output += r.data.len() as u64;
    }

    /// Raw payload bytes so far.
    pub fn raw_len(&self, out: &[u8]) -> usize {
        out.len() - self.start - HEADER_LEN
    }

    /// Fill in the header and checksum.
    pub fn finish(self, out: &mut [u8]) {
        let len = (out.len() - self.start - HEADER_LEN) as u32;
        let h = &mut out[self.start..];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = 0;
        h[3] = 0;
        h[4..8].copy_from_slice(&len.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&self.count.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_seq.0.to_le_bytes());
        h[24..32].copy_from_slice(&self.first_ts.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&h[0..32]);
        hasher.update(&h[HEADER_LEN..]);
        let crc = hasher.finalize();
        h[32..36].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Append the block holding `payload` (stored as `codec`, `stored` being the compressed bytes
/// for zstd) to `out`.
pub fn write(out: &mut Vec<u8>, payload: &Payload, codec: Codec, stored: Option<&[u8]>) {
    let body: &[u8] = stored.unwrap_or(&payload.buf);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(match codec {
        Codec::Raw => 0,
        Codec::Zstd => 1,
    });
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&(payload.buf.len() as u32).to_le_bytes());
    out.extend_from_slice(&payload.count.to_le_bytes());
    out.extend_from_slice(&payload.first_seq.0.to_le_bytes());
    out.extend_from_slice(&payload.first_ts.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[start..start + 32]);
    hasher.update(body);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(body);
}

/// What sits at the start of a buffer.
#[derive(Debug)]
pub enum Decoded {
    /// A whole block with a valid header and checksum.
    Block(Header),
    /// The buffer ends inside a block of this total length (read more, or a torn tail).
    Short(usize),
    /// Not a valid block.
    Bad(&'static str),
}

/// Check the block at the start of `buf` (header and crc; the payload is decoded separately).
pub fn decode(buf: &[u8]) -> Decoded {
    if buf.len() < HEADER_LEN {
        return Decoded::Short(HEADER_LEN);
    }
    if buf[0..2] != MAGIC {
        return Decoded::Bad("bad block magic");
    }
    let codec = match buf[2] {
        0 => Codec::Raw,
        1 => Codec::Zstd,
        _ => return Decoded::Bad("unknown block codec"),
    };
    if buf[3] != 0 {
        return Decoded::Bad("reserved block byte set");
    }
    let stored_len = u32_at(buf, 4) as usize;
    let raw_len = u32_at(buf, 8) as usize;
    let count = u32_at(buf, 12);
    if raw_len > MAX_RAW || stored_len > MAX_RAW + MAX_RAW / 64 + 1024 || count == 0 {
        return Decoded::Bad("block lengths out of range");
    }
    if codec == Codec::Raw && stored_len != raw_len {
        return Decoded::Bad("raw block with two lengths");
    }
    let total = HEADER_LEN + stored_len;
    if buf.len() < total {
        return Decoded::Short(total);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&buf[0..32]);
    hasher.update(&buf[HEADER_LEN..total]);
    if hasher.finalize() != u32_at(buf, 32) {
        return Decoded::Bad("block crc mismatch");
    }
    Decoded::Block(Header {
        codec,
        stored_len,
        raw_len,
        count,
        first_seq: Seq(u64_at(buf, 16)),
        first_ts: u64_at(buf, 24) as i64,
    })
}

/// Decompression state kept by one reader for all the blocks it reads: a zstd context (made at
/// the first packed block) and the buffer of the last payload.
#[derive(Default)]
pub struct Scratch {
    context: Option<zstd::bulk::Decompressor<'static>>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch")
            .field("buf", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// The raw payload of a checked block: `stored` itself, or decompressed into `scratch`.
pub fn payload<'a>(
    header: &Header,
    stored: &'a [u8],
    scratch: &'a mut Scratch,
) -> Result<&'a [u8], &'static str> {
    match header.codec {
        Codec::Raw => Ok(stored),
        Codec::Zstd => {
            let context = match &mut scratch.context {
                Some(context) => context,
                None => scratch.context.insert(
                    zstd::bulk::Decompressor::new()
                        .map_err(|_| "a zstd decompression context could not be set up")?,
                ),
            };
            let scratch = &mut scratch.buf;
            scratch.resize(header.raw_len, 0);
            let n = context
                .decompress_to_buffer(stored, &mut scratch[..])
                .map_err(|_| "block does not decompress")?;
            if n != header.raw_len {
                return Err("block decompresses to the wrong length");
            }
            Ok(&scratch[..n])
        }
    }
}

/// One record decoded from a payload, borrowing its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub seq: Seq,
    pub ts: i64,
    pub stream: StreamKind,
    pub partial: bool,
    pub data: &'a [u8],
}

impl RecordRef<'_> {
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

/// The records of a raw payload, in order; an item is `Err` (and the iteration ends) when the
/// payload does not decode into exactly `count` records.
#[derive(Debug)]
pub struct Records<'a> {
    payload: &'a [u8],
    at: usize,
    left: u32,
    seq: Seq,
    ts: i64,
    failed: bool,
}

impl<'a> Records<'a> {
    pub fn new(header: &Header, payload: &'a [u8]) -> Records<'a> {
        Records {
            payload,
            at: 0,
            left: header.count,
            seq: header.first_seq,
            ts: header.first_ts,
            failed: false,
        }
    }

    fn fail(&mut self, why: &'static str) -> Option<Result<RecordRef<'a>, &'static str>> {
        self.failed = true;
        Some(Err(why))
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.left == 0 {
            if self.at != self.payload.len() {
                return self.fail("bytes after a block's last record");
            }
            return None;
        }
        let Some(tag) = varint::get(self.payload, &mut self.at) else {
            return self.fail("truncated record tag");
        };
        let Some(delta) = varint::get(self.payload, &mut self.at) else {
            return self.fail("truncated record ts");
        };
        let len = tag >> 2;
        if len > MAX_DATA as u64 || self.payload.len() - self.at < len as usize {
            return self.fail("record length past the block");
        }
        let data = &self.payload[self.at..self.at + len as usize];
        self.at += len as usize;
        self.ts = self.ts.wrapping_add(varint::unzigzag(delta));
        let record = RecordRef {
            seq: self.seq,
            ts: self.ts,
            stream: if tag & 1 == 1 {
                StreamKind::Stderr
            } else {
                StreamKind::Stdout
            },
            partial: tag & 2 == 2,
            data,
        };
        self.seq = self.seq.next();
        self.left -= 1;
        Some(Ok(record))
    }
}

/// A zstd context kept for many blocks: creating one sets up (and zeroes) its tables, which
/// cost as much as compressing a 64 KiB block when a context was made per block.
pub struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    pub fn new(level: i32) -> std::io::Result<Compressor> {
        zstd::bulk::Compressor::new(level).map(Compressor)
    }

    /// `raw` compressed into `out` (replacing what it held): the same bytes a fresh context
    /// gives.
    pub fn compress(&mut self, raw: &[u8], out: &mut Vec<u8>) -> std::io::Result<()> {
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        self.0.compress_to_buffer(raw, out).map(drop)
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
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

    fn sample() -> Vec<Record> {
        (0..5u64)
            .map(|i| Record {
                seq: Seq(40 + i),
                ts: 1_000 - (i as i64) * 3 + if i == 4 { 1 << 40 } else { 0 },
                stream: if i % 2 == 0 {
                    StreamKind::Stdout
                } else {
                    StreamKind::Stderr
                },
                data: format!("line {i}\n").repeat(i as usize).into_bytes(),
                partial: i == 3,
            })
            .collect()
    }

    fn decode_all(buf: &[u8]) -> Vec<Record> {
        let Decoded::Block(h) = decode(buf) else {
            panic!("not a block")
        };
        let mut scratch = Scratch::default();
        let p = payload(&h, &buf[HEADER_LEN..h.block_len()], &mut scratch).expect("payload");
        Records::new(&h, p)
            .map(|r| r.expect("record").to_record())
            .collect()
    }

    #[test]
    fn a_reused_compressor_gives_what_a_fresh_context_gives() {
        let blocks: Vec<Vec<u8>> = (0..5u8)
            .map(|i| {
                (0..70_000u32)
                    .map(|n| (n.wrapping_mul(u32::from(i) + 7) % 251) as u8)
                    .collect()
            })
            .collect();
        let mut kept = Compressor::new(3).expect("compressor");
        let mut out = Vec::new();
        for block in &blocks {
            kept.compress(block, &mut out).expect("compress");
            assert_eq!(out, zstd::bulk::compress(block, 3).expect("fresh"));
            assert_eq!(
                zstd::bulk::decompress(&out, block.len()).expect("back"),
                *block
            );
        }
    }

    #[test]
    fn raw_and_zstd_blocks_round_trip_and_every_bit_flip_is_caught() {
        let records = sample();
        let mut p = Payload::default();
        for r in &records {
            p.push_record(r);
        }
        let mut raw = Vec::new();
        write(&mut raw, &p, Codec::Raw, None);
        assert_eq!(decode_all(&raw), records);
        let mut packed = Vec::new();
        Compressor::new(3)
            .expect("compressor")
            .compress(&p.buf, &mut packed)
            .expect("compress");
        let mut z = Vec::new();
        write(&mut z, &p, Codec::Zstd, Some(&packed));
        assert_eq!(decode_all(&z), records);
        for buf in [&raw, &z] {
            for byte in 0..buf.len() {
                let mut bad = buf.clone();
                bad[byte] ^= 0x10;
                assert!(!matches!(decode(&bad), Decoded::Block(_)), "flip at {byte}");
            }
            assert!(matches!(decode(&buf[..buf.len() - 1]), Decoded::Short(_)));
        }
    }

    #[test]
    fn a_block_encoded_in_place_equals_one_written_from_a_payload() {
        let records = sample();
        let mut p = Payload::default();
        for r in &records {
            p.push_record(r);
        }
        let mut written = b"before".to_vec();
        write(&mut written, &p, Codec::Raw, None);
        let mut in_place = b"before".to_vec();
        let mut b = RawBlock::begin(&mut in_place, records[0].seq, records[0].ts);
        for r in &records {
            b.push(&mut in_place, r);
        }
        assert_eq!(b.output, p.output);
        b.finish(&mut in_place);
        assert_eq!(in_place, written);
    }

    #[test]
    fn a_100_byte_record_costs_three_bytes_in_the_payload() {
        let mut p = Payload::default();
        p.push(Seq(1), 10, StreamKind::Stdout, false, &[b'y'; 100]);
        p.push(Seq(2), 11, StreamKind::Stdout, false, &[b'y'; 100]);
        assert_eq!(p.buf.len(), 2 * 103);
    }
}
