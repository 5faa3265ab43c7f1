//! `cargo bench -p drover-store --bench store`: store figures next to a same-run baseline.
//!
//! 1. bytes on disk per record and compression on three committed corpora (`benches/corpus/`):
//!    the active (raw) segment, the packed segments, and zstd levels vs lz4_flex on the same
//!    64 KiB blocks;
//! 2. append throughput, 100-byte records in batches of 256, default durability (group commit)
//!    vs a raw `BufWriter<File>` write of the same record bytes (and the same then fdatasynced),
//!    on tmpfs (the store's own cost) and in the temp directory (a disk: the device's too);
//! 3. follow throughput: records/s reaching one follower while a writer appends;
//! 4. a log of 1 GiB of output (the transcript corpus, repeated): reopen time, `tail 100`
//!    (median, p99 over 1000 queries) vs reading the last 100 lines of the same bytes in a plain
//!    file, and reads from the middle by seq and by time.
//!
//! Temp files (2 GiB+) live in a `tempfile` directory removed at the end.

mod codec;
mod corpus;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use drover_proto::{AgentId, Record, Seq, StreamKind};
use drover_store::{FollowItem, LogQuery, Store, StoreConfig};

const BATCH: usize = 256;

fn batch(first: u64, size: usize, data: &[u8]) -> Vec<Record> {
    (0..size as u64)
        .map(|i| Record {
            seq: Seq(first + i),
            ts: 1_700_000_000_000_000_000 + (first + i) as i64,
            stream: StreamKind::Stdout,
            data: data.to_vec(),
            partial: false,
        })
        .collect()
}

fn rate(n: u64, d: Duration) -> String {
    format!("{:>6.2} M records/s", n as f64 / d.as_secs_f64() / 1e6)
}

/// Files of the log still raw (`.seg`).
fn raw_segments(dir: &Path, agent: AgentId) -> usize {
    std::fs::read_dir(dir.join("logs").join(agent.to_string()))
        .expect("ls")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count()
}

fn wait_packed(dir: &Path, agent: AgentId) -> Duration {
    let start = Instant::now();
    while raw_segments(dir, agent) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    start.elapsed()
}

fn sizes(root: &Path) {
    println!("bytes on disk per record (appends of {BATCH}, 1 µs apart)");
    for corpus in corpus::all() {
        let n = corpus.lines.len();
        let records = corpus::records(&corpus.lines, 1, n);
        let output = corpus.output();
        let dir = root.join(corpus.name.split(' ').next().expect("name"));
        // One segment: the raw figure is measured before anything is sealed and packed.
        let one_segment = StoreConfig {
            segment_bytes: 1 << 30,
            ..StoreConfig::default()
        };
        let store = Store::open(&dir, one_segment).expect("open");
        let agent = AgentId::new();
        store.open_log(agent);
        for chunk in records.chunks(BATCH) {
            store.append(agent, chunk).expect("append");
        }
        let raw = store.log_bounds(agent).expect("bounds").bytes;
        store.close_log(agent);
        let took = wait_packed(&dir, agent);
        let packed = store.log_bounds(agent).expect("bounds").bytes;
        println!(
            "{}: {n} records, {output} bytes of output ({:.1} bytes/record)",
            corpus.name,
            output as f64 / n as f64
        );
        println!(
            "  format 1 (28-byte frame header):  {:.3}x output, 28.00 bytes overhead/record",
            (output + 28 * n as u64 + 16) as f64 / output as f64
        );
        println!(
            "  active segment (raw blocks):      {:.3}x output, {:>5.2} bytes overhead/record",
            raw as f64 / output as f64,
            (raw as f64 - output as f64) / n as f64
        );
        println!(
            "  packed (zstd 3, 64 KiB blocks):   {:.3}x output = ratio {:.2}x, {:.2} bytes/record (packed {:.0} ms after the close; a closed log waits pack_interval, 1 s)",
            packed as f64 / output as f64,
            output as f64 / packed as f64,
            packed as f64 / n as f64,
            took.as_secs_f64() * 1e3
        );
        codec::compare(&corpus);
    }
}

/// Append throughput in `root`, against raw `BufWriter` writes of the same bytes there, with
/// and without an `fdatasync` at the end. On a disk the store's default durability waits for
/// the device (a log keeps at most its last two segments unsynced), which the unsynced raw
/// write never does; on tmpfs (`where_ = "tmpfs"`) neither can wait, and the ratio is the
/// store's own cost. Returns the store for the follow part.
fn append_in(root: &Path, where_: &str, line: &[u8]) -> Store {
    let n_batches = 8_000u64; // 2 048 000 records
    let batches: Vec<Vec<Record>> = (0..n_batches)
        .map(|b| batch(1 + b * BATCH as u64, BATCH, line))
        .collect();
    let total = n_batches * BATCH as u64;
    let raw_path = root.join("raw.bin");
    let start = Instant::now();
    let raw_file = {
        let mut raw = std::io::BufWriter::new(std::fs::File::create(&raw_path).expect("raw"));
        for b in &batches {
            for r in b {
                raw.write_all(&r.data).expect("raw write");
            }
        }
        raw.into_inner().expect("flush")
    };
    let raw_time = start.elapsed();
    raw_file.sync_data().expect("raw sync");
    let raw_synced_time = start.elapsed();
    drop(raw_file);
    std::fs::remove_file(&raw_path).expect("rm raw");

    let store = Store::open(&root.join("append"), StoreConfig::default()).expect("open");
    let agent = AgentId::new();
    store.open_log(agent);
    let start = Instant::now();
    for b in &batches {
        store.append(agent, b).expect("append");
    }
    let append_time = start.elapsed();
    store.sync().expect("sync");
    let synced_time = start.elapsed();
    let ratio = |raw: Duration, store: Duration| raw.as_secs_f64() / store.as_secs_f64();
    println!("append 100-byte records, batches of {BATCH}, {total} records, on {where_}");
    println!(
        "  raw BufWriter<File> write       {}",
        rate(total, raw_time)
    );
    println!(
        "  ... then fdatasync              {}",
        rate(total, raw_synced_time)
    );
    println!(
        "  Store::append (group commit)    {}  ({:.2}x raw write)",
        rate(total, append_time),
        ratio(raw_time, append_time)
    );
    println!(
        "  ... then sync()                 {}  ({:.2}x raw write + fdatasync)",
        rate(total, synced_time),
        ratio(raw_synced_time, synced_time)
    );
    store
}

fn append(root: &Path) {
    let mut line = vec![b'x'; 99];
    line.push(b'\n');
    // tmpfs first: it shows the store's own cost with no device to wait for.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            drop(append_in(dir.path(), "tmpfs (/dev/shm)", &line));
        }
    }
    let store = append_in(root, "the temp directory's filesystem", &line);

    // Follow throughput while appending.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt");
    let agent = AgentId::new();
    store.open_log(agent);
    let follow_total = 1_024_000u64;
    let mut follower = store.follow(agent, Seq(1)).expect("follow");
    let reader = rt.spawn(async move {
        let mut seen = 0u64;
        while let Some(item) = follower.next().await {
            if let FollowItem::Records(rs) = item {
                seen += rs.len() as u64;
            }
        }
        seen
    });
    let start = Instant::now();
    let mut next = 1u64;
    while next <= follow_total {
        store
            .append(agent, &batch(next, BATCH, &line))
            .expect("append");
        next += BATCH as u64;
    }
    store.close_log(agent);
    let seen = rt.block_on(reader).expect("reader");
    let follow_time = start.elapsed();
    assert_eq!(seen, follow_total);
    println!(
        "follow while appending: {} delivered to one follower",
        rate(seen, follow_time)
    );
}

/// The last `n` lines of a plain file, read backwards in 64 KiB steps (what `tail -n` does).
fn tail_file(path: &Path, n: usize) -> usize {
    let mut file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("meta").len();
    let mut buf = Vec::new();
    let mut pos = len;
    while pos > 0 && buf.iter().filter(|&&b| b == b'\n').count() <= n {
        let step = pos.min(64 * 1024);
        pos -= step;
        let mut chunk = vec![0u8; step as usize];
        file.seek(SeekFrom::Start(pos)).expect("seek");
        file.read_exact(&mut chunk).expect("read");
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    buf.split_inclusive(|&b| b == b'\n').rev().take(n).count()
}

fn big(root: &Path) {
    let corpus = corpus::all().swap_remove(1);
    let config = StoreConfig {
        agent_budget: 2 << 30,
        global_budget: 4 << 30,
        ..StoreConfig::default()
    };
    let dir = root.join("big");
    let store = Store::open(&dir, config.clone()).expect("open");
    let agent = AgentId::new();
    store.open_log(agent);
    let plain_path = root.join("plain.log");
    let mut plain = std::io::BufWriter::new(std::fs::File::create(&plain_path).expect("plain"));
    let start = Instant::now();
    let mut next = 1u64;
    while store.log_bounds(agent).expect("bounds").output < 1 << 30 {
        let records = corpus::records(&corpus.lines, next, BATCH);
        for r in &records {
            plain.write_all(&r.data).expect("plain");
        }
        store.append(agent, &records).expect("append");
        next += BATCH as u64;
    }
    plain.flush().expect("flush");
    drop(plain);
    store.sync().expect("sync");
    let written = start.elapsed();
    let b = store.log_bounds(agent).expect("bounds");
    println!(
        "a log of {} MiB of output ({} records, {}) in {:.1} s",
        b.output >> 20,
        next - 1,
        corpus.name,
        written.as_secs_f64()
    );
    // Let the packer finish all but the active segment.
    let deadline = Instant::now() + Duration::from_secs(600);
    while raw_segments(&dir, agent) > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = store.log_bounds(agent).expect("bounds");
    println!(
        "  on disk after packing: {} MiB ({:.2}x smaller than the output)",
        b.bytes >> 20,
        b.output as f64 / b.bytes as f64
    );
    drop(store);
    let start = Instant::now();
    let store = Store::open(&dir, config).expect("reopen");
    println!(
        "  reopen (pack footers, scan of the active segment): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let tail = LogQuery {
        tail: Some(100),
        limit: 100,
        ..LogQuery::default()
    };
    let timed = |f: &dyn Fn()| -> (f64, f64) {
        let mut times: Vec<Duration> = (0..1000)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        times.sort();
        (
            times[500].as_secs_f64() * 1e6,
            times[990].as_secs_f64() * 1e6,
        )
    };
    let (m, p) = timed(&|| assert_eq!(tail_file(&plain_path, 100), 100));
    println!("  tail 100 of the plain file (baseline): median {m:.1} us, p99 {p:.1} us");
    let (m, p) = timed(&|| {
        let r = store.read(agent, &tail).expect("tail");
        assert_eq!(r.records.len(), 100);
    });
    println!("  tail 100 of the store:                 median {m:.1} us, p99 {p:.1} us");
    let mid = LogQuery {
        since_seq: Some(Seq(next / 2)),
        limit: 100,
        ..LogQuery::default()
    };
    let (m, p) = timed(&|| assert_eq!(store.read(agent, &mid).expect("mid").records.len(), 100));
    println!("  100 from the middle by seq (packed):   median {m:.1} us, p99 {p:.1} us");
    let at = corpus::records(&corpus.lines, next / 3, 1)[0].ts;
    let by_time = LogQuery {
        since: Some(at),
        limit: 100,
        ..LogQuery::default()
    };
    let (m, p) = timed(&|| {
        assert_eq!(
            store.read(agent, &by_time).expect("since").records.len(),
            100
        )
    });
    println!("  100 from a third in by time (packed):  median {m:.1} us, p99 {p:.1} us");
}

/// `cargo bench -p drover-store --bench store [-- sizes|append|big ...]`: all sections, or the
/// ones named.
fn main() {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let root = tempfile::tempdir().expect("tempdir");
    if run("sizes") {
        sizes(root.path());
    }
    if run("append") {
        append(root.path());
    }
    if run("big") {
        big(root.path());
    }
    drop(root);
}
