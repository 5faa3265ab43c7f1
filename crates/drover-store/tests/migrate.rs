//! Upgrade: a store written by the format-1 code (checked-in fixture, see
//! `tests/fixtures/format1/README.md`) opens, reads back exactly and continues.

mod common;

use std::path::Path;

use common::{assert_run, open, rec, recs};
use drover_proto::{AgentId, Seq};
use drover_store::{LogQuery, StoreConfig};

const WHOLE: &str = "0190a5b2-0000-7000-8000-000000000001";
const TORN: &str = "0190a5b2-0000-7000-8000-000000000002";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("ls fixture") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn all(store: &drover_store::Store, agent: AgentId) -> Vec<drover_proto::Record> {
    let q = LogQuery {
        since_seq: Some(Seq(1)),
        limit: 10_000,
        ..LogQuery::default()
    };
    store.read(agent, &q).expect("read").records
}

#[test]
fn a_format_1_store_is_migrated_on_open_and_reads_back_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/logs");
    copy_dir(&fixture, &dir.path().join("logs"));
    let whole: AgentId = WHOLE.parse().expect("id");
    let torn: AgentId = TORN.parse().expect("id");
    let output =
        |from: u64, to: u64| -> u64 { recs(from, to).iter().map(|r| r.data.len() as u64).sum() };

    let store = open(dir.path(), StoreConfig::default());
    let b = store.log_bounds(whole).expect("bounds");
    assert_eq!((b.first_seq, b.next_seq), (Seq(1), Seq(301)));
    assert_eq!(b.output, output(1, 300));
    let records = all(&store, whole);
    assert_eq!(records.len(), 300);
    assert_run(&records, 1);
    // The torn half frame is gone; everything synced before it is there.
    let b = store.log_bounds(torn).expect("bounds");
    assert_eq!((b.first_seq, b.next_seq), (Seq(1), Seq(121)));
    let records = all(&store, torn);
    assert_eq!(records.len(), 120);
    assert_run(&records, 1);
    // Index-driven queries work on the migrated segments.
    let tail = LogQuery {
        tail: Some(10),
        ..LogQuery::default()
    };
    assert_run(&store.read(whole, &tail).expect("tail").records, 291);
    let by_time = LogQuery {
        since: Some(rec(150).ts),
        limit: 2,
        ..LogQuery::default()
    };
    assert_run(&store.read(whole, &by_time).expect("since").records, 150);

    // Every format-1 segment became a pack; nothing half-done is left.
    let log_dir = dir.path().join("logs").join(WHOLE);
    assert_eq!(
        names(&log_dir),
        vec![
            "00000000000000000001.pack",
            "00000000000000000078.pack",
            "00000000000000000148.pack",
            "00000000000000000218.pack",
            "00000000000000000288.pack",
        ]
    );
    assert_eq!(
        names(&dir.path().join("logs").join(TORN)),
        vec!["00000000000000000001.pack", "00000000000000000076.pack"]
    );

    // Appends continue in a new (format-2, raw) segment, and all of it survives a reopen. (Live
    // logs: a closed log's last segment would be packed too.)
    store.open_log(whole);
    store.open_log(torn);
    store.append(whole, &recs(301, 320)).expect("append");
    store.append(torn, &recs(121, 125)).expect("append");
    store.sync().expect("sync");
    drop(store);
    assert_eq!(
        names(&log_dir).last().map(String::as_str),
        Some("00000000000000000301.seg")
    );
    let store = open(dir.path(), StoreConfig::default());
    let records = all(&store, whole);
    assert_eq!(records.len(), 320);
    assert_run(&records, 1);
    let records = all(&store, torn);
    assert_eq!(records.len(), 125);
    assert_run(&records, 1);
    assert_eq!(
        store.log_bounds(whole).expect("bounds").output,
        output(1, 320)
    );
}

#[test]
fn an_interrupted_migration_or_pack_is_finished_or_undone_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format1/logs");
    copy_dir(&fixture, &dir.path().join("logs"));
    let whole: AgentId = WHOLE.parse().expect("id");
    let log_dir = dir.path().join("logs").join(WHOLE);
    // Migrate once in another directory to get real packs.
    let done = tempfile::tempdir().expect("tempdir");
    copy_dir(&fixture, &done.path().join("logs"));
    drop(open(done.path(), StoreConfig::default()));
    let packed = done.path().join("logs").join(WHOLE);
    // A crash after the rename of segment 1's pack, before its `.seg` was removed; and one
    // while segment 78's pack was still being written.
    std::fs::copy(
        packed.join("00000000000000000001.pack"),
        log_dir.join("00000000000000000001.pack"),
    )
    .expect("copy pack");
    std::fs::write(
        log_dir.join("00000000000000000078.pack.tmp"),
        b"half a pack",
    )
    .expect("tmp");

    let store = open(dir.path(), StoreConfig::default());
    let records = all(&store, whole);
    assert_eq!(records.len(), 300);
    assert_run(&records, 1);
    assert!(
        names(&log_dir).iter().all(|n| n.ends_with(".pack")),
        "{:?}",
        names(&log_dir)
    );
}
