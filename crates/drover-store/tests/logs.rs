//! Logs: append/read queries, reopen, retention boundaries, concurrent readers, corruption.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{assert_run, open, rec, recs, small_config};
use drover_proto::{AgentId, Record, Seq, StreamKind};
use drover_store::{LogQuery, StoreConfig, StoreError};

fn since(seq: u64, limit: u32) -> LogQuery {
    LogQuery {
        since_seq: Some(Seq(seq)),
        limit,
        ..LogQuery::default()
    }
}

#[test]
fn queries_by_seq_tail_time_stream_and_until() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), small_config());
    let agent = AgentId::new();
    for chunk in recs(1, 1000).chunks(37) {
        store.append(agent, chunk).expect("append");
    }
    let b = store.log_bounds(agent).expect("bounds");
    assert_eq!((b.first_seq, b.next_seq), (Seq(1), Seq(1001)));

    let r = store.read(agent, &since(0, 10_000)).expect("read");
    assert_eq!(r.records.len(), 1000);
    assert_run(&r.records, 1);
    assert!(!r.truncated);

    let r = store.read(agent, &since(500, 10)).expect("read");
    assert_run(&r.records, 500);
    assert_eq!((r.records.len(), r.next_seq), (10, Seq(510)));

    let tail = LogQuery {
        tail: Some(100),
        limit: 1000,
        ..LogQuery::default()
    };
    let r = store.read(agent, &tail).expect("tail");
    assert_eq!(r.records.len(), 100);
    assert_run(&r.records, 901);

    let until = LogQuery {
        tail: Some(5),
        until_seq: Some(Seq(50)),
        ..LogQuery::default()
    };
    let r = store.read(agent, &until).expect("until");
    assert_run(&r.records, 45);
    assert_eq!(r.records.len(), 5);

    let by_time = LogQuery {
        since: Some(rec(777).ts),
        limit: 3,
        ..LogQuery::default()
    };
    assert_run(&store.read(agent, &by_time).expect("ts").records, 777);
    let between = LogQuery {
        since: Some(rec(777).ts - 1),
        limit: 1,
        ..LogQuery::default()
    };
    assert_run(&store.read(agent, &between).expect("ts").records, 777);

    let stderr = LogQuery {
        since_seq: Some(Seq(1)),
        stream: Some(StreamKind::Stderr),
        limit: 5,
        ..LogQuery::default()
    };
    let r = store.read(agent, &stderr).expect("stream");
    let seqs: Vec<u64> = r.records.iter().map(|r| r.seq.0).collect();
    assert_eq!(seqs, vec![3, 6, 9, 12, 15]);
    assert_eq!(
        r.next_seq,
        Seq(16),
        "continues after the last scanned record"
    );

    let future = store.read(agent, &since(5000, 10)).expect("future");
    assert!(future.records.is_empty());
}

#[test]
fn seq_mismatch_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), StoreConfig::default());
    let agent = AgentId::new();
    store.append(agent, &recs(1, 10)).expect("append");
    let gap = store.append(agent, &recs(12, 13));
    assert!(matches!(
        gap,
        Err(StoreError::SeqMismatch {
            expected: Seq(11),
            got: Seq(12),
            ..
        })
    ));
    let mut broken = recs(11, 13);
    broken[2].seq = Seq(99);
    assert!(matches!(
        store.append(agent, &broken),
        Err(StoreError::SeqMismatch { .. })
    ));
    assert!(matches!(
        store.append(agent, &recs(5, 6)),
        Err(StoreError::SeqMismatch { .. })
    ));
    assert_eq!(store.log_bounds(agent).expect("bounds").next_seq, Seq(11));
    store
        .append(agent, &recs(11, 20))
        .expect("append continues");
    assert_run(&store.read(agent, &since(1, 100)).expect("read").records, 1);
}

#[test]
fn logs_survive_reopen_and_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentId::new();
    {
        let store = open(dir.path(), small_config());
        for chunk in recs(1, 500).chunks(10) {
            store.append(agent, chunk).expect("append");
        }
        store.sync().expect("sync");
    }
    let store = open(dir.path(), small_config());
    assert_eq!(store.log_bounds(agent).expect("bounds").next_seq, Seq(501));
    store
        .append(agent, &recs(501, 600))
        .expect("append after reopen");
    let r = store.read(agent, &since(1, 10_000)).expect("read");
    assert_eq!(r.records.len(), 600);
    assert_run(&r.records, 1);
    // Sealed segments found at startup get their index built lazily; a mid-log read uses it.
    assert_run(
        &store.read(agent, &since(250, 3)).expect("read").records,
        250,
    );
}

#[test]
fn per_agent_budget_removes_oldest_segments_and_reads_say_truncated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        segment_bytes: 4096,
        agent_budget: 16 * 1024,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config);
    let agent = AgentId::new();
    for chunk in recs(1, 3000).chunks(16) {
        store.append(agent, chunk).expect("append");
    }
    let b = store.log_bounds(agent).expect("bounds");
    assert!(
        b.bytes <= 16 * 1024 + 4096,
        "within budget plus one segment: {}",
        b.bytes
    );
    assert!(
        b.first_seq > Seq(1000),
        "old records removed: first {}",
        b.first_seq
    );
    assert_eq!(b.next_seq, Seq(3001));

    let r = store.read(agent, &since(1, 5)).expect("read");
    assert!(r.truncated);
    assert_eq!(r.first_seq, b.first_seq);
    assert_run(&r.records, b.first_seq.0);
    let r = store
        .read(agent, &since(b.first_seq.0, 5))
        .expect("read at first");
    assert!(!r.truncated);
    let r = store
        .read(agent, &since(b.first_seq.0 - 1, 5))
        .expect("read before first");
    assert!(r.truncated);
    let old_time = LogQuery {
        since: Some(0),
        limit: 1,
        ..LogQuery::default()
    };
    assert!(store.read(agent, &old_time).expect("ts").truncated);

    // Lowering the budget trims at once, never the active segment.
    store.set_agent_budget(agent, 1);
    let after = store.log_bounds(agent).expect("bounds");
    assert!(
        after.bytes <= 4096 + 16 * 64,
        "only the active segment left: {}",
        after.bytes
    );
    assert_run(
        &store
            .read(agent, &since(after.first_seq.0, 10_000))
            .expect("read")
            .records,
        after.first_seq.0,
    );
    assert_eq!(
        store
            .read(agent, &since(0, 10_000))
            .expect("read")
            .records
            .last()
            .map(|r| r.seq),
        Some(Seq(3000))
    );
}

#[test]
fn global_budget_removes_oldest_segments_across_agents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        segment_bytes: 4096,
        global_budget: 64 * 1024,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config);
    let (old, new) = (AgentId::new(), AgentId::new());
    // Both agents live: their active segments stay (closed logs may lose theirs too).
    store.open_log(old);
    store.open_log(new);
    // Records that do not compress: the budget is bytes on disk, and packing compressible ones
    // could bring both logs under it before retention had removed anything (a race).
    let records: Vec<Record> = (1..=1500).map(common::noisy).collect();
    for chunk in records.chunks(16) {
        store.append(old, chunk).expect("append old");
    }
    store.sync().expect("sync");
    for chunk in records.chunks(16) {
        store.append(new, chunk).expect("append new");
    }
    // The syncer enforces the global budget; wait for it (condition, not a fixed sleep).
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while store.log_bounds(old).expect("b").bytes + store.log_bounds(new).expect("b").bytes
        > 64 * 1024
    {
        assert!(
            std::time::Instant::now() < deadline,
            "global budget never enforced"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (bo, bn) = (
        store.log_bounds(old).expect("b"),
        store.log_bounds(new).expect("b"),
    );
    assert!(
        bo.first_seq > Seq(1),
        "the older agent lost its oldest segments first"
    );
    assert!(
        bo.first_seq.0 > bn.first_seq.0,
        "old agent trimmed more: {bo:?} vs {bn:?}"
    );
    assert!(store.disk_usage() >= bo.bytes + bn.bytes);
    // Removing an agent removes its log and its bytes.
    let before = store.disk_usage();
    store
        .remove_agent(old)
        .expect("not in the registry, but its log goes");
    assert_eq!(store.log_bounds(old).expect("b").bytes, 0);
    assert!(store.disk_usage() < before);
    assert!(!dir.path().join("logs").join(old.to_string()).exists());
}

#[test]
fn concurrent_readers_see_only_complete_correct_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path(), small_config());
    let agent = AgentId::new();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3u64)
        .map(|k| {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut x = 12345 + k;
                while !done.load(Ordering::Relaxed) || reads < 50 {
                    let end = store.log_bounds(agent).expect("bounds").next_seq.0;
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let start = 1 + (x >> 33) % end.max(1);
                    let r = store.read(agent, &since(start, 300)).expect("read");
                    assert_run(&r.records, start.max(r.first_seq.0));
                    let tail = store
                        .read(
                            agent,
                            &LogQuery {
                                tail: Some(20),
                                ..LogQuery::default()
                            },
                        )
                        .expect("tail");
                    if let Some(first) = tail.records.first() {
                        assert_run(&tail.records, first.seq.0);
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for chunk in recs(1, 20_000).chunks(64) {
        store.append(agent, chunk).expect("append");
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().expect("reader thread") >= 50);
    }
}

#[test]
fn corrupt_segments_are_recovered_or_reported_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentId::new();
    {
        let store = open(dir.path(), small_config());
        for chunk in recs(1, 400).chunks(10) {
            store.append(agent, chunk).expect("append");
        }
        store.sync().expect("sync");
    }
    let log_dir = dir.path().join("logs").join(agent.to_string());
    let mut segs: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .collect();
    segs.sort();
    assert!(segs.len() >= 4, "several segments: {}", segs.len());
    // Flip a byte in the middle of an old sealed segment, and garbage after the last one's end.
    let mid = &segs[1];
    let mut bytes = std::fs::read(mid).expect("read seg");
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    std::fs::write(mid, bytes).expect("write seg");
    let last = segs.last().expect("last");
    let mut tail = std::fs::read(last).expect("read last");
    let good_len = tail.len();
    tail.extend_from_slice(b"\xD7\x5Egarbage-after-a-torn-write");
    std::fs::write(last, tail).expect("write last");
    // A stray file and a bogus segment name are ignored.
    std::fs::write(log_dir.join("notes.txt"), b"hi").expect("write stray");

    let store = open(dir.path(), small_config());
    assert_eq!(
        std::fs::metadata(last).expect("meta").len() as usize,
        good_len,
        "torn tail cut"
    );
    assert_eq!(store.log_bounds(agent).expect("bounds").next_seq, Seq(401));
    let whole = store.read(agent, &since(1, 10_000));
    assert!(
        matches!(whole, Err(StoreError::Corrupt { .. })),
        "got {whole:?}"
    );
    // Records before and after the damage stay readable.
    assert_run(&store.read(agent, &since(1, 5)).expect("head").records, 1);
    assert_run(
        &store
            .read(
                agent,
                &LogQuery {
                    tail: Some(30),
                    ..LogQuery::default()
                },
            )
            .expect("tail")
            .records,
        371,
    );
    store
        .append(agent, &recs(401, 410))
        .expect("append after recovery");

    // A segment whose header is garbage (the last one) is reset, never a panic.
    drop(store);
    std::fs::write(last, b"not a segment").expect("clobber");
    let store = open(dir.path(), small_config());
    let b = store.log_bounds(agent).expect("bounds");
    let first_of_last: u64 = last
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    assert_eq!(b.next_seq, Seq(first_of_last));
    store
        .append(agent, &recs(first_of_last, first_of_last + 5))
        .expect("append continues");
}

#[test]
fn the_global_budget_also_reclaims_the_last_segments_of_closed_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        // One segment per log: without this rule nothing could ever be removed.
        segment_bytes: 1024 * 1024,
        global_budget: 64 * 1024,
        ..StoreConfig::default()
    };
    let store = open(dir.path(), config.clone());
    let agents: Vec<AgentId> = (0..4).map(|_| AgentId::new()).collect();
    // Incompressible, so packing a closed log does not bring it under the budget by itself.
    let records: Vec<_> = (1..=400).map(common::noisy).collect();
    for agent in &agents {
        store.open_log(*agent);
        for chunk in records.chunks(16) {
            store.append(*agent, chunk).expect("append");
        }
        store.close_log(*agent);
    }
    let log_bytes = || -> u64 {
        agents
            .iter()
            .map(|a| store.log_bounds(*a).expect("bounds").bytes)
            .sum()
    };
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while log_bytes() > 64 * 1024 {
        assert!(
            std::time::Instant::now() < deadline,
            "closed logs were never reclaimed: {} bytes",
            log_bytes()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The oldest log went first; it now reads as empty and says so.
    let read = store.read(agents[0], &since(1, 100)).expect("read");
    assert!(read.records.is_empty());
    assert!(read.truncated, "{read:?}");
    assert_eq!(read.first_seq, Seq(401));
    // The newest log is intact.
    let read = store.read(agents[3], &since(1, 1000)).expect("read");
    assert_eq!(read.records.len(), 400);
    // Reopened, the emptied log still ends where it ended: it reads as truncated, and goes on
    // with the next seq (before, it came back as a new log at seq 1).
    drop(store);
    let store = open(dir.path(), config);
    let read = store.read(agents[0], &since(1, 100)).expect("read");
    assert!(read.records.is_empty());
    assert!(read.truncated, "{read:?}");
    assert_eq!((read.first_seq, read.next_seq), (Seq(401), Seq(401)));
    store.open_log(agents[0]);
    store
        .append(
            agents[0],
            &records[..1]
                .iter()
                .map(|r| Record {
                    seq: Seq(401),
                    ..r.clone()
                })
                .collect::<Vec<_>>(),
        )
        .expect("the log goes on at 401");
}

/// Descriptors this process has open on segment files under `dir`. Directories are left out:
/// the syncer opens one for a moment to fsync it.
fn segment_fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            target.starts_with(dir)
                && target
                    .extension()
                    .is_some_and(|ext| ext == "seg" || ext == "pack")
        })
        .count()
}

#[test]
fn open_writers_stay_under_the_cap_and_closed_ones_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = 8;
    let store = open(
        dir.path(),
        StoreConfig {
            max_open_writers: cap,
            // Not closed for being idle during the test: only the cap closes them.
            writer_idle: std::time::Duration::from_secs(3600),
            ..small_config()
        },
    );
    let agents: Vec<AgentId> = (0..40).map(|_| AgentId::new()).collect();
    for agent in &agents {
        store.open_log(*agent);
        store.append(*agent, &recs(1, 5)).expect("append");
    }
    // Every log opened its writer; the syncer brings them back under the cap.
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while store.open_writers() > cap {
        assert!(
            std::time::Instant::now() < deadline,
            "{} open",
            store.open_writers()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The count is the truth: the descriptors on segment files are as few.
    let fds = segment_fds_under(&dir.path().join("logs"));
    assert!(fds <= cap, "{fds} segment files open, cap {cap}");
    // Closed writers reopen at the next append, and nothing is lost or doubled.
    for agent in &agents {
        store
            .append(*agent, &recs(6, 9))
            .expect("append after close");
    }
    for agent in &agents {
        let read = store.read(*agent, &since(1, 100)).expect("read");
        assert_eq!(read.records.len(), 9);
        assert_run(&read.records, 1);
    }
    // Removed logs give their count back.
    for agent in &agents {
        store.close_log(*agent);
    }
    store.sync().expect("sync");
    assert_eq!(store.open_writers(), 0);
}

/// A reopened store keeps the last segment of every log it loaded until told which are live
/// (`open_log`) and that the rest are closed (`settle`): the last segment of an agent still
/// running under a holder is its active one, whose records the holder was told are stored.
/// Before, the global budget took it at open, before the daemon could reopen the log.
#[test]
fn a_reopened_store_keeps_loaded_logs_last_segments_until_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        segment_bytes: 1024 * 1024,
        global_budget: 64 * 1024,
        ..StoreConfig::default()
    };
    let records: Vec<_> = (1..=400).map(common::noisy).collect();
    let (running, ended) = (AgentId::new(), AgentId::new());
    {
        let store = open(dir.path(), config.clone());
        for agent in [running, ended] {
            store.open_log(agent);
            for chunk in records.chunks(16) {
                store.append(agent, chunk).expect("append");
            }
        }
        // The daemon goes (a crash) with both logs open: `running` goes on under its holder,
        // `ended`'s agent ends while no daemon runs (its end comes with the re-attach).
    }
    let store = open(dir.path(), config);
    let kept = |agent| {
        store
            .read(agent, &since(1, 1000))
            .expect("read")
            .records
            .len()
    };
    assert_eq!(
        (kept(running), kept(ended)),
        (400, 400),
        "nothing taken at open"
    );
    // The daemon re-attaches the running agent, then settles: only the other log may go.
    store.open_log(running);
    store.settle();
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while kept(ended) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ended log was never reclaimed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(kept(running), 400, "the live log's active segment stays");
}
