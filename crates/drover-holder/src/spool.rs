//! The spool: every record the holder captured and the daemon has not acknowledged, in a file
//! beside the holder's socket.
//!
//! Records are appended as they are captured and sent to the daemon from the file, so one path
//! serves a connected daemon, a daemon that is away, and a daemon that re-attaches and asks for
//! everything from some seq on. When every record is acknowledged the file is emptied. Its size
//! is the holder's backpressure signal: past the limit the holder stops reading the agent's
//! pipes, so the agent blocks on its next write and nothing is dropped.
//!
//! Frame: `len: u32 BE` (of what follows), `seq: u64 BE`, `ts: i64 BE`, `stream: u8`,
//! `partial: u8`, then the bytes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::wire::WireRecord;

/// Bytes the spool adds to each record's data.
pub const HEADER: usize = 4 + 8 + 8 + 1 + 1;
/// Smallest read of the file when sending.
const READ_CHUNK: usize = 64 * 1024;

/// The spool file and its length.
#[derive(Debug)]
pub struct Spool {
    file: File,
    len: u64,
    buf: Vec<u8>,
}

impl Spool {
    /// Creates (or empties) the spool at `path`, private to the owner.
    pub fn create(path: &Path) -> std::io::Result<Spool> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Spool {
            file,
            len: 0,
            buf: Vec::new(),
        })
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the file holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends records (a write to the page cache: it survives the holder's death, not the
    /// machine's, like the daemon's own log appends before their group sync).
    pub fn append(&mut self, records: &[WireRecord]) -> std::io::Result<()> {
        self.buf.clear();
        for r in records {
            let body = HEADER - 4 + r.data.len();
            let body32 =
                u32::try_from(body).map_err(|_| std::io::Error::other("record too large"))?;
            self.buf.extend_from_slice(&body32.to_be_bytes());
            self.buf.extend_from_slice(&r.seq.to_be_bytes());
            self.buf.extend_from_slice(&r.ts.to_be_bytes());
            self.buf.push(r.stream);
            self.buf.push(u8::from(r.partial));
            self.buf.extend_from_slice(&r.data);
        }
        self.file.write_all_at(&self.buf, self.len)?;
        self.len += self.buf.len() as u64;
        // A large batch should not keep its buffer around: the holder's memory stays small.
        if self.buf.capacity() > 256 * 1024 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Records starting at byte `offset`, about `max_bytes` of them (at least one whole record
    /// when one is there), and the offset after the last one returned.
    ///
    /// The file is read in chunks of at least [`READ_CHUNK`] bytes, not two reads per record:
    /// with 100-byte lines those reads were most of the holder's time.
    pub fn read_at(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> std::io::Result<(Vec<WireRecord>, u64)> {
        let mut out = Vec::new();
        // The file's bytes from `offset` on, read as far as needed.
        let mut bytes = Vec::new();
        let mut pos = 0usize;
        while offset + (pos as u64) < self.len && (pos < max_bytes || out.is_empty()) {
            self.fill(&mut bytes, offset, pos + HEADER)?;
            let header: &[u8; HEADER] = bytes[pos..pos + HEADER]
                .try_into()
                .map_err(|_| std::io::Error::other("corrupt spool frame"))?;
            let body = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let data_len = body
                .checked_sub(HEADER - 4)
                .ok_or_else(|| std::io::Error::other("corrupt spool frame"))?;
            let (seq, ts) = (eight(header, 4), eight(header, 12));
            let (stream, partial) = (header[20], header[21] != 0);
            self.fill(&mut bytes, offset, pos + HEADER + data_len)?;
            out.push(WireRecord {
                seq: u64::from_be_bytes(seq),
                ts: i64::from_be_bytes(ts),
                stream,
                partial,
                data: bytes[pos + HEADER..pos + HEADER + data_len].to_vec(),
            });
            pos += 4 + body;
        }
        Ok((out, offset + pos as u64))
    }

    /// Reads on into `bytes` (the file from `offset`) until it holds at least `upto` bytes: a
    /// chunk at a time, never past the end (a frame that runs past it is an error).
    fn fill(&self, bytes: &mut Vec<u8>, offset: u64, upto: usize) -> std::io::Result<()> {
        let have = bytes.len();
        if have >= upto {
            return Ok(());
        }
        let left = self.len.saturating_sub(offset + have as u64);
        let want = (upto - have).max(READ_CHUNK) as u64;
        let more = usize::try_from(want.min(left)).map_err(std::io::Error::other)?;
        if have + more < upto {
            return Err(std::io::Error::other("corrupt spool frame"));
        }
        bytes.resize(have + more, 0);
        self.file
            .read_exact_at(&mut bytes[have..], offset + have as u64)
    }

    /// Forgets everything (all of it was acknowledged).
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.len = 0;
        Ok(())
    }
}

/// Eight bytes of `header` from `at`.
fn eight(header: &[u8; HEADER], at: usize) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&header[at..at + 8]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, data: &[u8]) -> WireRecord {
        WireRecord {
            seq,
            ts: seq as i64 * 10,
            stream: 1 + (seq % 2) as u8,
            data: data.to_vec(),
            partial: seq % 3 == 0,
        }
    }

    #[test]
    fn records_come_back_exactly_from_any_offset() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut spool = Spool::create(&dir.path().join("spool")).unwrap_or_else(|e| panic!("{e}"));
        let records: Vec<WireRecord> = (1..=50).map(|i| rec(i, &vec![b'x'; i as usize])).collect();
        spool
            .append(&records[..20])
            .unwrap_or_else(|e| panic!("{e}"));
        spool
            .append(&records[20..])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        let mut at = 0;
        while at < spool.len() {
            let (batch, next) = spool.read_at(at, 100).unwrap_or_else(|e| panic!("{e}"));
            assert!(!batch.is_empty());
            got.extend(batch);
            at = next;
        }
        assert_eq!(got, records);
        spool.clear().unwrap_or_else(|e| panic!("{e}"));
        assert!(spool.is_empty());
        let (none, at) = spool.read_at(0, 100).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.is_empty());
        assert_eq!(at, 0);
    }

    #[test]
    fn reads_cross_chunk_boundaries_and_a_cut_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("spool");
        let mut spool = Spool::create(&path).unwrap_or_else(|e| panic!("{e}"));
        // Small records over many chunks, and records larger than a chunk among them.
        let records: Vec<WireRecord> = (1..=3000)
            .map(|i| {
                let len = if i % 1000 == 0 {
                    3 * READ_CHUNK + 7
                } else {
                    100
                };
                rec(i, &vec![b'a' + (i % 26) as u8; len])
            })
            .collect();
        spool.append(&records).unwrap_or_else(|e| panic!("{e}"));
        for max_bytes in [1, 4096, READ_CHUNK - 1, 1 << 20, usize::MAX] {
            let mut got = Vec::new();
            let mut at = 0;
            while at < spool.len() {
                let (batch, next) = spool
                    .read_at(at, max_bytes)
                    .unwrap_or_else(|e| panic!("{e}"));
                assert!(!batch.is_empty() && next > at);
                got.extend(batch);
                at = next;
            }
            assert_eq!(got, records, "max_bytes {max_bytes}");
        }

        // The file cut inside the last frame (as a crash could leave it): every whole frame
        // before it reads, and the cut one is an error rather than garbage.
        let whole = spool.len();
        let cut = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        cut.set_len(whole - 10).unwrap_or_else(|e| panic!("{e}"));
        spool.len = whole - 10;
        let (first, next) = spool.read_at(0, 1000).unwrap_or_else(|e| panic!("{e}"));
        assert!(!first.is_empty());
        assert_eq!(first, records[..first.len()]);
        let last_at = whole - (4 + HEADER - 4 + 100) as u64;
        assert!(spool.read_at(last_at, 1000).is_err());
        assert!(next < last_at);
    }
}
