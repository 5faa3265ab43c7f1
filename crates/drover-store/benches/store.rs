//! `cargo bench -p drover-store --bench store`: store figures next to a same-run baseline.
//!
//! 1. append throughput, 100-byte records in batches of 256, default durability (group commit)
//!    vs a raw `BufWriter<File>` write of the same record bytes;
//! 2. follow throughput: records/s reaching one follower while a writer appends;
//! 3. `tail 100` latency on a 1 GiB log (median, p99 over 1000 queries).
//!
//! Temp files (1 GiB+) live in a `tempfile` directory removed at the end.

use std::io::Write;
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

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut line = vec![b'x'; 99];
    line.push(b'\n');

    // 1. Append vs raw buffered write.
    let n_batches = 8_000u64; // 2 048 000 records
    let batches: Vec<Vec<Record>> = (0..n_batches)
        .map(|b| batch(1 + b * BATCH as u64, BATCH, &line))
        .collect();
    let total = n_batches * BATCH as u64;
    let raw_path = root.path().join("raw.bin");
    let start = Instant::now();
    {
        let mut raw = std::io::BufWriter::new(std::fs::File::create(&raw_path).expect("raw"));
        for b in &batches {
            for r in b {
                raw.write_all(&r.data).expect("raw write");
            }
        }
        raw.flush().expect("flush");
    }
    let raw_time = start.elapsed();
    std::fs::remove_file(&raw_path).expect("rm raw");

    let store = Store::open(&root.path().join("append"), StoreConfig::default()).expect("open");
    let agent = AgentId::new();
    let start = Instant::now();
    for b in &batches {
        store.append(agent, b).expect("append");
    }
    let append_time = start.elapsed();
    store.sync().expect("sync");
    let synced_time = start.elapsed();
    drop(batches);
    println!("append 100-byte records, batches of {BATCH}, {total} records");
    println!("  raw BufWriter<File> write      {}", rate(total, raw_time));
    println!(
        "  Store::append (group commit)   {}  ({:.2}x raw)",
        rate(total, append_time),
        raw_time.as_secs_f64() / append_time.as_secs_f64()
    );
    println!(
        "  ... including final sync()    {}",
        rate(total, synced_time)
    );

    // 2. Follow throughput while appending.
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

    // 3. tail 100 on a 1 GiB log.
    let big = StoreConfig {
        agent_budget: 2 << 30,
        global_budget: 4 << 30,
        ..StoreConfig::default()
    };
    let dir = root.path().join("big");
    let store = Store::open(&dir, big.clone()).expect("open");
    let agent = AgentId::new();
    let kib = vec![b'y'; 1000];
    let start = Instant::now();
    let mut next = 1u64;
    while store.log_bounds(agent).expect("bounds").bytes < 1 << 30 {
        store
            .append(agent, &batch(next, BATCH, &kib))
            .expect("append");
        next += BATCH as u64;
    }
    store.sync().expect("sync");
    println!(
        "wrote a {} MiB log ({} records) in {:.1} s",
        store.log_bounds(agent).expect("b").bytes >> 20,
        next - 1,
        start.elapsed().as_secs_f64()
    );
    drop(store);
    let start = Instant::now();
    let store = Store::open(&dir, big).expect("reopen");
    println!(
        "  reopen (recovery scan of the last segments): {:.1} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    let tail = LogQuery {
        tail: Some(100),
        limit: 100,
        ..LogQuery::default()
    };
    let mut times: Vec<Duration> = (0..1000)
        .map(|_| {
            let t = Instant::now();
            let r = store.read(agent, &tail).expect("tail");
            assert_eq!(r.records.len(), 100);
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "  tail 100: median {:.1} us, p99 {:.1} us",
        times[500].as_secs_f64() * 1e6,
        times[990].as_secs_f64() * 1e6
    );
    let mid = LogQuery {
        since_seq: Some(Seq(next / 2)),
        limit: 100,
        ..LogQuery::default()
    };
    let t = Instant::now();
    store.read(agent, &mid).expect("mid");
    println!(
        "  100 from the middle, cold segment index: {:.1} us",
        t.elapsed().as_secs_f64() * 1e6
    );
    drop(store);
    drop(root);
}
