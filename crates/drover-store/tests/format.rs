//! The compact format: bytes per record, packing of sealed segments, budgets of output bytes.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{assert_run, noisy, open, rec, recs, TIMEOUT};
use drover_proto::{AgentId, Record, Seq, StreamKind};
use drover_store::{LogQuery, Store, StoreConfig};

fn line(seq: u64, ts: i64) -> Record {
    let mut data = vec![b'y'; 99];
    data.push(b'\n');
    Record {
        seq: Seq(seq),
        ts,
        stream: StreamKind::Stdout,
        data,
        partial: false,
    }
}

fn since(seq: u64) -> LogQuery {
    LogQuery {
        since_seq: Some(Seq(seq)),
        limit: 100_000,
        ..LogQuery::default()
    }
}

/// Files in the agent's log directory ending in `ext`.
fn count(dir: &Path, agent: AgentId, ext: &str) -> usize {
    std::fs::read_dir(dir.join("logs").join(agent.to_string()))
        .map(|ls| {
            ls.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(ext))
            })
            .count()
        })
        .unwrap_or(0)
}

/// Every record from seq 1, read in as many queries as the read limit needs.
fn read_all(store: &Store, agent: AgentId) -> Vec<Record> {
    let mut all = Vec::new();
    let mut from = Seq(1);
    loop {
        let r = store.read(agent, &since(from.0)).expect("read");
        if r.records.is_empty() {
            return all;
        }
        all.extend(r.records);
        from = r.next_seq;
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_100_byte_record_costs_about_three_bytes_in_the_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let agent = AgentId::new();
    store.open_log(agent);
    // 10 000 records, 1 µs apart, in appends of 256 (the last one 16): 40 blocks.
    let records: Vec<Record> = (1..=10_000u64)
        .map(|s| line(s, 1_700_000_000_000_000_000 + s as i64 * 1_000))
        .collect();
    for chunk in records.chunks(256) {
        store.append(agent, chunk).expect("append");
    }
    let b = store.log_bounds(agent).expect("bounds");
    assert_eq!(b.output, 1_000_000);
    // File header 16, block headers 40 × 36, per record a 2-byte length and a 2-byte ts delta
    // (1 byte for each block's first record: its delta from the header's ts is 0).
    assert_eq!(b.bytes, 16 + 40 * 36 + 10_000 * 104 - 40);
    assert!(b.bytes * 100 <= b.output * 106, "{} bytes on disk", b.bytes);
    assert_eq!(read_all(&store, agent), records);
}

#[test]
fn sealed_segments_are_packed_and_every_query_reads_them_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        segment_bytes: 64 * 1024,
        pack_block: 8 * 1024,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config.clone());
    let agent = AgentId::new();
    store.open_log(agent);
    for chunk in recs(1, 20_000).chunks(50) {
        store.append(agent, chunk).expect("append");
    }
    let raw = store.log_bounds(agent).expect("bounds").bytes;
    // All but the active segment get packed, off the append path.
    wait_until("the packer", || count(dir.path(), agent, ".seg") == 1);
    let packs = count(dir.path(), agent, ".pack");
    assert!(packs >= 8, "{packs} packs");
    let b = store.log_bounds(agent).expect("bounds");
    assert!(b.bytes * 3 < raw, "packed {} bytes, raw {raw}", b.bytes);
    assert_eq!(
        b.output,
        recs(1, 20_000)
            .iter()
            .map(|r| r.data.len() as u64)
            .sum::<u64>()
    );

    let check = |store: &Store| {
        let all = read_all(store, agent);
        assert_eq!(all.len(), 20_000);
        assert_run(&all, 1);
        for start in [1u64, 2, 777, 5_000, 12_345, 19_999] {
            let q = LogQuery {
                since_seq: Some(Seq(start)),
                limit: 3,
                ..LogQuery::default()
            };
            assert_run(&store.read(agent, &q).expect("read").records, start);
            let q = LogQuery {
                since: Some(rec(start).ts - 1),
                limit: 2,
                ..LogQuery::default()
            };
            assert_run(&store.read(agent, &q).expect("read").records, start);
        }
        let tail = LogQuery {
            tail: Some(100),
            ..LogQuery::default()
        };
        assert_run(&store.read(agent, &tail).expect("tail").records, 19_901);
        let stderr = LogQuery {
            since_seq: Some(Seq(9_990)),
            stream: Some(StreamKind::Stderr),
            limit: 4,
            ..LogQuery::default()
        };
        let seqs: Vec<u64> = store
            .read(agent, &stderr)
            .expect("stream")
            .records
            .iter()
            .map(|r| r.seq.0)
            .collect();
        assert_eq!(seqs, vec![9_990, 9_993, 9_996, 9_999]);
    };
    check(&store);
    store.sync().expect("sync");
    drop(store);
    // Reopening reads the packs' footers and gives the same answers.
    let store = open(dir.path(), config);
    assert_eq!(store.log_bounds(agent).expect("bounds"), b);
    check(&store);
    store.open_log(agent);
    store.append(agent, &recs(20_001, 20_010)).expect("append");
    assert_run(
        &store.read(agent, &since(19_990)).expect("read").records,
        19_990,
    );
}

#[test]
fn a_closed_logs_last_segment_is_packed_and_a_later_append_starts_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let agent = AgentId::new();
    store.open_log(agent);
    store.append(agent, &recs(1, 1_000)).expect("append");
    store.close_log(agent);
    // The packer renames the pack into place, then removes the segment: wait for both.
    wait_until("the packer", || {
        count(dir.path(), agent, ".pack") == 1 && count(dir.path(), agent, ".seg") == 0
    });
    // An append to a closed log (the daemon re-attaching an agent) goes to a new raw segment.
    store.append(agent, &recs(1_001, 1_010)).expect("append");
    assert_eq!(count(dir.path(), agent, ".seg"), 1);
    let all = read_all(&store, agent);
    assert_eq!(all.len(), 1_010);
    assert_run(&all, 1);
}

#[test]
fn a_64_kib_budget_of_output_is_kept_to_within_one_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let budget = 64 * 1024;
    let store = open(dir.path(), StoreConfig::default());
    let agent = AgentId::new();
    store.open_log(agent);
    store.set_agent_budget(agent, budget);
    // Incompressible 100-byte records so bytes on disk cannot hide behind compression.
    let mut next = 1u64;
    let mut batch = 1u64;
    while next <= 30_000 {
        let records: Vec<Record> = (next..next + batch).map(noisy).collect();
        store.append(agent, &records).expect("append");
        next += batch;
        batch = batch % 40 + 1;
        let b = store.log_bounds(agent).expect("bounds");
        let kept = (b.next_seq.0 - b.first_seq.0) * 100;
        assert_eq!(b.output, kept, "output is what reads return");
        // At most the budget; less than it by under one index step (16 KiB of raw segment)
        // plus the append that crossed it.
        assert!(b.output <= budget, "{} > {budget}", b.output);
        if next > 1_000 {
            assert!(
                b.output + 16 * 1024 + 40 * 104 + 36 > budget,
                "{} kept",
                b.output
            );
        }
    }
    // On disk: the kept records, the trimmed part of the oldest (16 KiB) segment, and the
    // segment being filled.
    let b = store.log_bounds(agent).expect("bounds");
    assert!(
        b.bytes <= budget + 2 * 17 * 1024,
        "{} bytes on disk",
        b.bytes
    );
    let r = store.read(agent, &since(1)).expect("read");
    assert!(r.truncated);
    assert_eq!(r.first_seq, b.first_seq);
    assert_eq!(r.records.first().map(|r| r.seq), Some(b.first_seq));
    assert_eq!(r.records.len() as u64, b.next_seq.0 - b.first_seq.0);
    assert_eq!(
        r.records,
        (b.first_seq.0..next).map(noisy).collect::<Vec<_>>()
    );
}

/// A record near the largest a block may carry (16 MiB) after smaller ones starts a block of its
/// own, in the active segment and in the pack, and reads back whole. Before, it went into the
/// block of the records before it, past the size a reader accepts: synced records that read as
/// `Corrupt`.
#[test]
fn a_huge_record_after_others_starts_its_own_block_and_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let agent = AgentId::new();
    store.open_log(agent);
    let record = |seq: u64, byte: u8, len: usize| Record {
        seq: Seq(seq),
        ts: seq as i64,
        stream: StreamKind::Stdout,
        data: vec![byte; len],
        partial: false,
    };
    let huge = 16 * 1024 * 1024;
    // In one append (as a backlog retry offers what waited), and one at a time (the packer
    // joins them).
    store
        .append(agent, &[record(1, b'a', 100 * 1024), record(2, b'b', huge)])
        .expect("append");
    store
        .append(agent, &[record(3, b'c', 65_530)])
        .expect("append");
    store
        .append(agent, &[record(4, b'd', huge)])
        .expect("append");
    let lengths = |store: &Store| -> Vec<(u64, usize)> {
        read_all(store, agent)
            .iter()
            .map(|r| (r.seq.0, r.data.len()))
            .collect()
    };
    let want = vec![(1, 100 * 1024), (2, huge), (3, 65_530), (4, huge)];
    assert_eq!(lengths(&store), want);
    store.close_log(agent);
    // Two segments (the first passed 8 MiB at record 2), both packed.
    wait_until("the packer", || {
        count(dir.path(), agent, ".pack") == 2 && count(dir.path(), agent, ".seg") == 0
    });
    assert_eq!(lengths(&store), want, "packed");
}
