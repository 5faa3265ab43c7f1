//! Crash recovery with a real process killed by SIGKILL in the middle of writing.
//!
//! The test re-executes its own binary (`--exact crash_writer_child`) with `DROVER_CRASH_DIR`
//! set; that child appends continuously and prints `synced <seq>` after each `Store::sync()`.
//! The parent kills it with SIGKILL mid-stream, appends a torn frame to simulate a write cut by
//! power loss, reopens, and checks every reported-synced record, the cut tail and the next seq.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{assert_run, rec, recs};
use drover_proto::{AgentId, Seq};
use drover_store::{LogQuery, Store, StoreConfig};

const DIR_VAR: &str = "DROVER_CRASH_DIR";
const AGENT_VAR: &str = "DROVER_CRASH_AGENT";

/// The child half: only does something when the parent test started it.
#[test]
fn crash_writer_child() {
    let (Ok(dir), Ok(agent)) = (std::env::var(DIR_VAR), std::env::var(AGENT_VAR)) else {
        return;
    };
    let agent: AgentId = agent.parse().expect("agent id");
    let config = StoreConfig {
        segment_bytes: 256 * 1024,
        ..StoreConfig::default()
    };
    let store = Store::open(std::path::Path::new(&dir), config).expect("open");
    let mut next = 1u64;
    let mut out = std::io::stdout();
    loop {
        for _ in 0..8 {
            store
                .append(agent, &recs(next, next + 255))
                .expect("append");
            next += 256;
        }
        store.sync().expect("sync");
        writeln!(out, "synced {}", next - 1).expect("print");
        out.flush().expect("flush");
        // Keep writing unsynced batches so the kill lands mid-stream.
        store.append(agent, &recs(next, next + 99)).expect("append");
        next += 100;
    }
}

#[test]
fn sigkill_mid_write_loses_nothing_synced_and_recovers_the_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = AgentId::new();
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir.path())
        .env(AGENT_VAR, agent.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let stdout = child.stdout.take().expect("stdout");
    let mut last_synced = 0u64;
    let mut reports = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(seq) = line.strip_prefix("synced ") {
            last_synced = seq.parse().expect("seq");
            reports += 1;
            if reports == 30 {
                break;
            }
        }
    }
    assert_eq!(reports, 30, "writer died early");
    child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
    child.wait().expect("reap");

    // The kill lands wherever the writer was: between frames, or in the middle of one (an
    // append is one write(2), but a kill can cut a large one short). Where the recovered last
    // segment must end is therefore learnt, not assumed: recover a copy of the state as the kill
    // left it, and note the length recovery gives its last segment.
    let log_dir = dir.path().join("logs").join(agent.to_string());
    let mut segs: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("ls")
        .map(|e| e.expect("e").path())
        .collect();
    segs.sort();
    let last = segs.last().expect("a segment").clone();
    let pristine = tempfile::tempdir().expect("tempdir");
    let pristine_log = pristine.path().join("logs").join(agent.to_string());
    std::fs::create_dir_all(&pristine_log).expect("mkdir");
    for seg in &segs {
        std::fs::copy(seg, pristine_log.join(seg.file_name().expect("name"))).expect("copy");
    }
    drop(Store::open(pristine.path(), StoreConfig::default()).expect("recover the copy"));
    let pristine_last = pristine_log.join(last.file_name().expect("name"));
    let len_before = std::fs::metadata(&pristine_last).map_or(0, |m| m.len());

    // Simulate a torn write on top: half a frame after whatever the kill left.
    let mut torn = Vec::new();
    torn.extend_from_slice(&[0xD7, 0x5E, 0, 0, 100, 0, 0, 0]);
    torn.extend_from_slice(&[0xAB; 30]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .expect("open")
        .write_all(&torn)
        .expect("tear");

    let store = Store::open(dir.path(), StoreConfig::default()).expect("reopen");
    assert_eq!(
        std::fs::metadata(&last).map_or(0, |m| m.len()),
        len_before,
        "torn tail removed: the last segment ends where recovery of the killed state ends it"
    );
    let bounds = store.log_bounds(agent).expect("bounds");
    assert!(
        bounds.next_seq.0 > last_synced,
        "synced {last_synced}, recovered up to {}",
        bounds.next_seq
    );
    let mut from = 1u64;
    while from < bounds.next_seq.0 {
        let q = LogQuery {
            since_seq: Some(Seq(from)),
            limit: 10_000,
            ..LogQuery::default()
        };
        let r = store.read(agent, &q).expect("read recovered log");
        assert!(!r.records.is_empty());
        assert_run(&r.records, from);
        from = r.next_seq.0;
    }
    assert_eq!(from, bounds.next_seq.0);
    store
        .append(agent, &[rec(from)])
        .expect("append continues at the right seq");
    let again = store
        .read(
            agent,
            &LogQuery {
                tail: Some(1),
                ..LogQuery::default()
            },
        )
        .expect("read");
    assert_eq!(again.records, vec![rec(from)]);
}
