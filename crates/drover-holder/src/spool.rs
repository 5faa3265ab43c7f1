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

const HEADER: usize = 4 + 8 + 8 + 1 + 1;

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
    pub fn read_at(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> std::io::Result<(Vec<WireRecord>, u64)> {
        let mut out = Vec::new();
        let mut at = offset;
        let mut taken = 0usize;
        while at < self.len && (taken < max_bytes || out.is_empty()) {
            let mut header = [0u8; HEADER];
            self.file.read_exact_at(&mut header, at)?;
            let body = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let data_len = body
                .checked_sub(HEADER - 4)
                .ok_or_else(|| std::io::Error::other("corrupt spool frame"))?;
            let mut data = vec![0u8; data_len];
            self.file.read_exact_at(&mut data, at + HEADER as u64)?;
            out.push(WireRecord {
                seq: u64::from_be_bytes(eight(&header, 4)),
                ts: i64::from_be_bytes(eight(&header, 12)),
                stream: header[20],
                partial: header[21] != 0,
                data,
            });
            at += (4 + body) as u64;
            taken += 4 + body;
        }
        Ok((out, at))
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
}
