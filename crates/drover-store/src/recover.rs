//! Loading logs at startup: list segments, finish or undo interrupted packs, migrate format 1,
//! verify the raw segments, cut a torn tail.
//!
//! Packs are whole by construction (fdatasynced before their rename), so only their footers are
//! read. Raw segments are scanned block by block: normally only the active one and the one
//! sealed before it, which the packer had not reached yet. The syncer fdatasyncs sealed
//! segments before (or with) the active one and only then counts records as synced, so a crash
//! can tear at most the unsynced end of the log, which lies in the last two segments: only
//! there is a torn or damaged tail cut off. Damage in an older raw segment is left in place and
//! reported as `StoreError::Corrupt` when a read reaches it.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use drover_proto::{AgentId, Seq};

use crate::index::{Builder, SegIndex};
use crate::log::{LogState, Segment};
use crate::segment::{self, Kind, Version, FILE_HEADER_LEN};
use crate::{migrate, pack, StoreConfig, StoreError};

/// Load the log in `dir` (all of its records are from earlier runs, so it starts closed).
pub fn load(
    dir: &Path,
    id: AgentId,
    budget: u64,
    config: &StoreConfig,
) -> Result<LogState, StoreError> {
    let io = |what: &str, path: &Path, e| StoreError::io(format!("{what} {}", path.display()), e);
    let mut files: BTreeMap<Seq, (bool, bool)> = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
        let entry = entry.map_err(|e| io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".pack.tmp") {
            // A pack the packer (or a migration) did not finish: its raw segment is intact.
            fs::remove_file(entry.path()).map_err(|e| io("removing", &entry.path(), e))?;
            continue;
        }
        match segment::parse_name(name) {
            Some((first, Kind::Raw)) => files.entry(first).or_default().0 = true,
            Some((first, Kind::Packed)) => files.entry(first).or_default().1 = true,
            None => {}
        }
    }
    let mut segments = VecDeque::new();
    let mut nexts = Vec::new();
    let mut unsynced = Vec::new();
    let mut resume_at = None;
    let count = files.len();
    for (i, (&first, &(raw, packed))) in files.iter().enumerate() {
        let recent = i + 2 >= count;
        let raw_path = dir.join(segment::file_name(first, Kind::Raw));
        if raw && packed {
            // Packed, renamed, but the raw file's removal did not happen: the pack is whole.
            fs::remove_file(&raw_path).map_err(|e| io("removing", &raw_path, e))?;
        }
        let loaded = if packed {
            Some(load_pack(dir, first)?)
        } else {
            load_raw(&raw_path, first, recent, config)?
        };
        let Some((seg, next)) = loaded else {
            // A damaged header that could not be written again (a full disk): the log goes on
            // from `first` once it has room, and a newer file goes as after a tear.
            resume_at = Some(first);
            for (&later, _) in files.range(Seq(first.0 + 1)..) {
                let path = dir.join(segment::file_name(later, Kind::Raw));
                tracing::warn!(agent = %id, path = %path.display(), "dropping segment after a damaged one");
                fs::remove_file(&path).map_err(|e| io("removing", &path, e))?;
            }
            break;
        };
        if recent && seg.kind == Kind::Raw && i + 1 < count {
            // The sealed one of the last two: what the last daemon appended to it may never
            // have been synced (it was killed before its group commit). Queued for the syncer,
            // and synced before any roll makes a third segment, as recovery checks only the
            // last two. (The active one stays within them until a roll, which syncs it first.)
            let file = fs::File::open(&seg.path).map_err(|e| io("opening", &seg.path, e))?;
            unsynced.push(Arc::new(file));
        }
        segments.push_back(seg);
        nexts.push(next);
    }
    // A tear in the older of the last two segments invalidates the newer one.
    let verify_from = segments.len().saturating_sub(2);
    for (i, &seg_next) in nexts.iter().enumerate().skip(verify_from) {
        if segments.get(i + 1).is_some_and(|n| n.first != seg_next) {
            for newer in segments.drain(i + 1..) {
                tracing::warn!(agent = %id, path = %newer.path.display(), "dropping segment after a torn one");
                fs::remove_file(&newer.path).map_err(|e| io("removing", &newer.path, e))?;
            }
            break;
        }
    }
    let mut state = LogState::new(dir.to_path_buf(), budget);
    state.unsettled = true;
    state.to_sync = unsynced;
    if let Some(active) = segments.back() {
        let last = active.index.offset_for_seq(Seq(u64::MAX));
        state.builder = Builder::sparse(last.map(|e| e.offset));
        state.next_seq = nexts[segments.len() - 1];
    } else if let Some(first) = resume_at {
        state.next_seq = first;
    } else if let Some(end) = read_end(dir) {
        // Every file of it went to retention: it goes on from its end.
        state.next_seq = end;
    }
    state.bytes = segments.iter().map(|s| s.len).sum();
    state.output = segments.iter().map(|s| s.output).sum();
    state.segments = segments;
    Ok(state)
}

/// Where the end of a log whose every segment retention removed is kept: the seq after its
/// last record, in decimal. Read only when the log has no segment.
const END: &str = "end";

/// Keeps the end of a log whose last segment is about to be removed: written whole and
/// synced, then renamed into place (the directory is synced with the segment's removal).
pub fn write_end(dir: &Path, next: Seq) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("end.tmp");
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(crate::PRIVATE_FILE)
        .open(&tmp)?;
    file.write_all(next.0.to_string().as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, dir.join(END))
}

fn read_end(dir: &Path) -> Option<Seq> {
    let text = fs::read_to_string(dir.join(END)).ok()?;
    text.trim().parse().ok().map(Seq)
}

/// A segment and the seq after its last record.
type Loaded = (Segment, Seq);

fn load_pack(dir: &Path, first: Seq) -> Result<Loaded, StoreError> {
    let path = dir.join(segment::file_name(first, Kind::Packed));
    let ctx = |what: &str| format!("{what} {}", path.display());
    let meta = fs::metadata(&path).map_err(|e| StoreError::io(ctx("reading"), e))?;
    let footer = pack::read_footer(&path).map_err(|e| StoreError::io(ctx("reading"), e))?;
    let (end, next, output, entries) = match footer {
        Ok(p) => (p.end, p.end_seq, p.output, p.entries),
        Err(why) => {
            // Not a torn write (packs are synced before they get their name): damage. Index
            // what still verifies; reads past it report `Corrupt`.
            tracing::warn!(path = %path.display(), problem = why, "pack footer damaged; indexing its blocks");
            let scan = segment::scan(&path, first, meta.len(), Builder::dense())
                .map_err(|e| StoreError::io(ctx("scanning"), e))?;
            (scan.valid_len, scan.next_seq, scan.output, scan.entries)
        }
    };
    let seg = Segment {
        first,
        path: path.into(),
        kind: Kind::Packed,
        len: meta.len(),
        end,
        output,
        index: Arc::new(SegIndex::new(entries)),
        pack_failed: false,
        sealed_at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    };
    Ok((seg, next))
}

/// Load a `.seg`: migrate format 1, scan format 2, reset a damaged header (recent segments).
/// `None`: a recent segment's damaged header could not be written again (a full disk), and its
/// file is gone.
fn load_raw(
    path: &Path,
    first: Seq,
    recent: bool,
    config: &StoreConfig,
) -> Result<Option<Loaded>, StoreError> {
    let ctx = |what: &str| format!("{what} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| StoreError::io(ctx("opening"), e))?;
    let meta = file
        .metadata()
        .map_err(|e| StoreError::io(ctx("reading"), e))?;
    let sealed_at = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let version = segment::version(&file, first).map_err(|e| StoreError::io(ctx("reading"), e))?;
    match version {
        Some(Version::V1) => {
            drop(file);
            let packed = migrate::migrate(path, first, config)?;
            let dir = path.parent().unwrap_or(path);
            let seg = Segment {
                first,
                path: dir.join(segment::file_name(first, Kind::Packed)).into(),
                kind: Kind::Packed,
                len: packed.len,
                end: packed.end,
                output: packed.output,
                index: Arc::new(SegIndex::new(packed.entries)),
                pack_failed: false,
                sealed_at,
            };
            return Ok(Some((seg, packed.end_seq)));
        }
        None if recent => {
            tracing::warn!(path = %path.display(), "segment header damaged; its records are dropped");
            drop(file);
            fs::remove_file(path).map_err(|e| StoreError::io(ctx("removing"), e))?;
            return match segment::create(path, first) {
                Ok(_) => Ok(Some((empty_raw(path, first, sealed_at), first))),
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                    tracing::warn!(path = %path.display(), error = %e, "segment not recreated; the log goes on once the disk has room");
                    Ok(None)
                }
                Err(e) => Err(StoreError::io(ctx("recreating"), e)),
            };
        }
        // An older segment with a damaged header: reads reaching it report `Corrupt`.
        None => {
            tracing::warn!(path = %path.display(), "segment header damaged");
            let mut seg = empty_raw(path, first, sealed_at);
            seg.len = meta.len();
            seg.end = meta.len();
            seg.pack_failed = true;
            return Ok(Some((seg, first)));
        }
        Some(Version::V2) => {}
    }
    let scan = segment::scan(path, first, meta.len(), Builder::sparse(None))
        .map_err(|e| StoreError::io(ctx("scanning"), e))?;
    let mut len = meta.len();
    if scan.valid_len < len && recent {
        tracing::warn!(
            path = %path.display(),
            problem = scan.problem.as_deref().unwrap_or("trailing bytes"),
            kept = scan.valid_len,
            dropped = len - scan.valid_len,
            "truncating damaged segment tail"
        );
        file.set_len(scan.valid_len)
            .map_err(|e| StoreError::io(ctx("truncating"), e))?;
        file.sync_data()
            .map_err(|e| StoreError::io(ctx("syncing"), e))?;
        len = scan.valid_len;
    }
    let seg = Segment {
        first,
        path: path.into(),
        kind: Kind::Raw,
        len,
        end: len,
        output: scan.output,
        index: Arc::new(SegIndex::new(scan.entries)),
        // Damage in an older segment stays where reads report it.
        pack_failed: scan.valid_len < len,
        sealed_at,
    };
    Ok(Some((seg, scan.next_seq)))
}

fn empty_raw(path: &Path, first: Seq, sealed_at: SystemTime) -> Segment {
    Segment {
        first,
        path: path.into(),
        kind: Kind::Raw,
        len: FILE_HEADER_LEN,
        end: FILE_HEADER_LEN,
        output: 0,
        index: Arc::new(SegIndex::default()),
        pack_failed: false,
        sealed_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_proto::{Record, StreamKind};

    /// The last sealed raw segment a killed daemon left may hold appends it never synced:
    /// loading queues it for the syncer (before, nothing synced it until the packer rewrote
    /// it, and a roll could push it out of the two segments recovery checks).
    #[test]
    fn the_last_sealed_raw_segment_is_queued_for_sync_at_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = AgentId::new();
        let config = StoreConfig {
            segment_bytes: 4096,
            ..StoreConfig::default()
        };
        {
            let store = crate::Store::open(dir.path(), config.clone()).expect("open");
            store.open_log(agent);
            let records: Vec<Record> = (1..=200)
                .map(|seq| Record {
                    seq: Seq(seq),
                    ts: seq as i64,
                    stream: StreamKind::Stdout,
                    data: format!("line {seq} of a few segments\n").into_bytes(),
                    partial: false,
                })
                .collect();
            for chunk in records.chunks(10) {
                store.append(agent, chunk).expect("append");
            }
        }
        let logs = dir.path().join("logs").join(agent.to_string());
        let state = load(&logs, agent, u64::MAX, &config).expect("load");
        assert!(
            state.segments.len() >= 2,
            "{} segments",
            state.segments.len()
        );
        // The packer may have packed the older of the two before the store closed.
        let recent_raw = state
            .segments
            .iter()
            .rev()
            .take(2)
            .filter(|s| s.kind == Kind::Raw)
            .count();
        assert!(recent_raw >= 1, "the active segment is raw");
        // The sealed one of the last two, unless the packer packed it before the store closed.
        assert_eq!(
            state.to_sync.len(),
            recent_raw - 1,
            "the sealed raw segment"
        );
        assert_eq!(state.next_seq, Seq(201));
    }
}
