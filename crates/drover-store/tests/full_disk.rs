//! A full disk at the worst moments for a log: when it rolls to a new segment, and when a
//! segment whose header was never written is found at the next start. Each must go on once the
//! disk has room, its records in order. The store lives on a 2 MiB tmpfs the test fills.
//!
//! Mounting needs root (CI runs as root). A test that cannot mount fails loudly: it never
//! passes without having filled a disk.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{assert_run, open, rec, recs};
use drover_proto::{AgentId, Seq};
use drover_store::{LogQuery, StoreConfig};

/// A 2 MiB tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Tmpfs {
        let parent = tempfile::tempdir().expect("tempdir");
        let path = parent.path().join("disk");
        std::fs::create_dir_all(&path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} ({status}): these tests need root to fill a real disk",
            path.display()
        );
        Tmpfs {
            path,
            _parent: parent,
        }
    }

    /// Write a file until the disk refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0xA5u8; 64 * 1024];
        while file.write(&chunk).is_ok_and(|n| n > 0) {}
        while file.write(&[0xA5]).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Small segments, and no packing (it would move bytes around while the disk is full).
fn config() -> StoreConfig {
    StoreConfig {
        segment_bytes: 4096,
        pack_interval: Duration::from_secs(3600),
        ..StoreConfig::default()
    }
}

fn store_dir(disk: &Tmpfs) -> PathBuf {
    disk.path.join("store")
}

/// The agent's raw segments, by first seq.
fn segments(store: &Path, agent: AgentId) -> Vec<(u64, u64)> {
    let Ok(entries) = std::fs::read_dir(store.join("logs").join(agent.to_string())) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, u64)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().into_string().ok()?;
            let first = name.strip_suffix(".seg")?.parse().ok()?;
            Some((first, e.metadata().ok()?.len()))
        })
        .collect();
    found.sort_unstable();
    found
}

fn everything() -> LogQuery {
    LogQuery {
        since_seq: Some(Seq(1)),
        limit: 100_000,
        ..LogQuery::default()
    }
}

/// The disk fills just as the active segment is full: the next append's new segment gets its
/// file but not its header. Before, that empty file stayed, and every later append failed on it
/// ("file exists") although the disk had room again: the log took nothing more until a restart.
#[test]
fn a_roll_the_full_disk_refused_goes_through_once_it_has_room() {
    let disk = Tmpfs::mount();
    let dir = store_dir(&disk);
    let store = open(&dir, config());
    let agent = AgentId::new();
    // Up to the point where the next append rolls.
    let mut next = 1;
    while segments(&dir, agent)
        .last()
        .is_none_or(|&(_, len)| len < 4096)
    {
        store.append(agent, &[rec(next)]).expect("append");
        next += 1;
    }
    let rolls_at = next;
    let filler = disk.fill();
    assert!(
        store.append(agent, &[rec(rolls_at)]).is_err(),
        "the full disk refuses the roll"
    );
    assert_eq!(
        store.log_bounds(agent).expect("bounds").next_seq,
        Seq(rolls_at),
        "a refused append takes nothing"
    );
    std::fs::remove_file(filler).expect("free the disk");
    store
        .append(agent, &recs(rolls_at, rolls_at + 199))
        .expect("the roll goes through once the disk has room");
    let read = store.read(agent, &everything()).expect("read");
    assert_eq!(read.records.len() as u64, rolls_at + 199);
    assert_run(&read.records, 1);
}

/// A segment file made just before a crash, its header never written, found at the next start
/// on a full disk: the store opens (before, remaking that header failed the whole start), the
/// log goes on from where it was once the disk has room.
#[test]
fn a_store_opens_on_a_full_disk_beside_a_segment_whose_header_was_never_written() {
    let disk = Tmpfs::mount();
    let dir = store_dir(&disk);
    let agent = AgentId::new();
    // Held open across the restart, as after a crash: the registry keeps its WAL files, so
    // the registry itself needs no new space to open.
    let registry;
    {
        let store = open(&dir, config());
        registry = rusqlite::Connection::open(dir.join("registry.sqlite3")).expect("registry");
        let _: i64 = registry
            .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
            .expect("read the registry");
        store.append(agent, &recs(1, 100)).expect("append");
        store.sync().expect("sync");
    }
    let last = segments(&dir, agent)
        .last()
        .map(|&(first, _)| first)
        .expect("a segment");
    assert!(last < 101);
    let torn = dir
        .join("logs")
        .join(agent.to_string())
        .join(format!("{:020}.seg", 101));
    std::fs::File::create(&torn).expect("an empty segment");
    let filler = disk.fill();
    let store = open(&dir, config());
    assert_eq!(store.log_bounds(agent).expect("bounds").next_seq, Seq(101));
    std::fs::remove_file(filler).expect("free the disk");
    store
        .append(agent, &recs(101, 300))
        .expect("append once the disk has room");
    let read = store.read(agent, &everything()).expect("read");
    assert_eq!(read.records.len(), 300);
    assert_run(&read.records, 1);
    drop(registry);
}
