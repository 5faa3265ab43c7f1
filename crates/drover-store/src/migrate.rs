//! Format 1 to format 2: a segment written before blocks existed (`DRVSEG01`, one 28-byte
//! header per record) is rewritten as a `.pack` when the store opens, so everything after
//! `Store::open` reads one format.
//!
//! Each format-1 segment is read frame by frame up to its first damaged or torn frame (the
//! same point format-1 recovery would have cut a torn tail at; records past damage in an older
//! segment were unreadable before too, and a read crossing the hole reports `Corrupt`), packed
//! to `<first>.pack.tmp`, fdatasynced, renamed to `<first>.pack`, the directory synced, and the
//! old `.seg` removed. A crash at any point leaves either the old segment or the whole pack
//! (recovery prefers the pack), so an interrupted migration simply runs again. It runs once
//! per segment, on the thread opening the store: the cost of reading the old logs once.

use std::fs::{self, File};
use std::path::Path;

use drover_proto::Seq;

use crate::block::RecordRef;
use crate::pack::{self, PackWriter, Packed};
use crate::segment::{self, Kind, FILE_HEADER_LEN};
use crate::v1::{FrameReader, Step};
use crate::{StoreConfig, StoreError};

/// Rewrite the format-1 segment at `path` (first seq `first`) as a pack; returns the pack.
pub fn migrate(path: &Path, first: Seq, config: &StoreConfig) -> Result<Packed, StoreError> {
    let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
    let dir = path
        .parent()
        .ok_or_else(|| StoreError::corrupt(path, "segment outside a log directory"))?;
    let len = fs::metadata(path)
        .map_err(|e| StoreError::io(ctx("reading", path), e))?
        .len();
    let tmp = pack::tmp_path(dir, first);
    let mut writer = PackWriter::create(&tmp, first, config.pack_level, config.pack_block)
        .map_err(|e| StoreError::io(ctx("creating", &tmp), e))?;
    let mut reader = FrameReader::open(path, FILE_HEADER_LEN, len)
        .map_err(|e| StoreError::io(ctx("opening", path), e))?;
    let mut next = first;
    loop {
        let problem = match reader
            .next()
            .map_err(|e| StoreError::io(ctx("reading", path), e))?
        {
            Step::Frame(offset, f) if f.seq != next => {
                format!("seq {} at offset {offset}, expected {next}", f.seq)
            }
            Step::Frame(_, f) => {
                writer
                    .push(RecordRef {
                        seq: f.seq,
                        ts: f.ts,
                        stream: f.stream,
                        partial: f.partial,
                        data: f.data,
                    })
                    .map_err(|e| StoreError::io(ctx("writing", &tmp), e))?;
                next = f.seq.next();
                continue;
            }
            Step::End => break,
            Step::Torn(offset) => format!("torn frame at offset {offset}"),
            Step::Bad(offset, why) => format!("{why} at offset {offset}"),
        };
        tracing::warn!(path = %path.display(), %problem, kept_through = %next, "format-1 segment damaged; migrating the records before the damage");
        break;
    }
    let packed = writer
        .finish()
        .map_err(|e| StoreError::io(ctx("writing", &tmp), e))?;
    let dest = dir.join(segment::file_name(first, Kind::Packed));
    fs::rename(&tmp, &dest).map_err(|e| StoreError::io(ctx("installing", &dest), e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(ctx("syncing", dir), e))?;
    fs::remove_file(path).map_err(|e| StoreError::io(ctx("removing", path), e))?;
    tracing::info!(path = %dest.display(), records = packed.end_seq.0 - first.0, "migrated a format-1 segment");
    Ok(packed)
}
