//! Streaming benchmark: lines/s from an agent to 1 and 10 lossless followers, and write→receive
//! latency at 10k lines/s, over CURVE, beside a raw libzmq CURVE PUB/SUB of the same messages
//! in the same run; then the same throughput over the ipc sockets in the state directory (no
//! CURVE: what a local `drover logs -f` uses).
//!
//! `cargo bench -p drover-daemon --bench stream`
//!
//! The paced writer for the latency figures is this program itself, re-executed with
//! `--writer <lines/s> <count>`: each line carries its write time, so the follower measures
//! capture + store + publish + transport + decode.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use drover_client::follow::Selection;
use drover_client::{Client, ClientOptions, FollowEvent, FollowOptions};
use drover_daemon::Config;
use drover_proto::{AgentId, AgentSpec, Record, RecordBatch, Seq, StreamKind};
use drover_zmq::Async;

mod raw;

const LINES: u64 = 1_000_000;
const RATE: u64 = 10_000;
const LATENCY_LINES: u64 = 30_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--writer") {
        let rate: u64 = args[2].parse().unwrap();
        let count: u64 = args[3].parse().unwrap();
        raw::writer(rate, count);
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.store.agent_budget = 1 << 30;
    config.ipc = true;
    let (addresses, options, stop, daemon) = raw::daemon(config).await;
    let client = Client::connect_with(&addresses.control, options.clone())
        .await
        .unwrap();

    println!("throughput: {LINES} lines of 100 bytes");
    let raw = raw_pubsub_throughput(LINES).await;
    println!("  raw libzmq CURVE PUB/SUB, batches of 256 : {raw:>10.0} lines/s");
    for followers in [1usize, 10] {
        let rate = drover_throughput(&client, &options, followers).await;
        println!(
            "  drover, {followers:>2} follower(s), zero loss   : {rate:>10.0} lines/s per follower ({:.0}% of raw)",
            100.0 * rate / raw
        );
    }

    println!("\nlatency at {RATE} lines/s, {LATENCY_LINES} lines");
    let raw = raw_pubsub_latency().await;
    print_latency("raw libzmq CURVE PUB/SUB", &raw);
    let drover = drover_latency(&client).await;
    print_latency("drover agent → follower", &drover);

    println!("\nthroughput over ipc (no CURVE), {LINES} lines of 100 bytes");
    let ipc = addresses.ipc.clone().expect("the ipc socket");
    let local = Client::connect(&ipc).await.unwrap();
    for followers in [1usize, 10] {
        let rate = drover_throughput(&local, &ClientOptions::default(), followers).await;
        println!(
            "  drover over ipc, {followers:>2} follower(s), zero loss : {rate:>10.0} lines/s per follower"
        );
    }

    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
}

fn spec(argv: Vec<String>) -> AgentSpec {
    AgentSpec {
        argv,
        ..AgentSpec::default()
    }
}

/// Spawn an agent printing LINES 100-byte lines; `followers` follow it; lines/s per follower.
async fn drover_throughput(client: &Client, options: &ClientOptions, followers: usize) -> f64 {
    let line = "y".repeat(99);
    let script = format!("read go; yes {line} | head -n {LINES}");
    let mut agent_spec = spec(vec!["sh".into(), "-c".into(), script]);
    agent_spec.stdin = drover_proto::StdinMode::Pipe;
    let agent = client.spawn(agent_spec).await.unwrap();
    let id = agent.id.to_string();
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(followers);
    let control = client.endpoint().to_owned();
    for _ in 0..followers {
        let id = id.clone();
        let control = control.clone();
        let options = options.clone();
        let ready = ready_tx.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect_with(&control, options).await.unwrap();
            let mut follower = client
                .follow(
                    Selection::Agents(vec![id]),
                    FollowOptions {
                        until_exit: true,
                        ..FollowOptions::default()
                    },
                )
                .await
                .unwrap();
            ready.send(()).await.unwrap();
            let mut next = 1u64;
            let mut lines = 0u64;
            let mut bytes = 0u64;
            let mut gaps = 0u64;
            while let Some(event) = follower.next().await.unwrap() {
                if let FollowEvent::Gap { .. } = event {
                    gaps += 1;
                }
                if let FollowEvent::Records { records, .. } = event {
                    for record in records {
                        assert_eq!(record.seq.0, next, "lossless, in order");
                        next += 1;
                        bytes += record.data.len() as u64;
                        // A line the writer left half-written for 50 ms arrives in two records.
                        lines += u64::from(!record.partial);
                    }
                }
            }
            assert_eq!(lines, LINES, "every line arrived");
            assert_eq!(bytes, LINES * 100, "every byte arrived");
            (Instant::now(), gaps)
        }));
    }
    for _ in 0..followers {
        ready_rx.recv().await.unwrap();
    }
    let started = Instant::now();
    client.write_stdin(&id, b"go\n".to_vec()).await.unwrap();
    let mut last = started;
    let mut gaps = 0;
    for task in tasks {
        let (done, refilled) = task.await.unwrap();
        last = last.max(done);
        gaps += refilled;
    }
    println!("    ({gaps} gaps refilled from the store across {followers} follower(s))");
    LINES as f64 / (last - started).as_secs_f64()
}

fn batch_of(agent: AgentId, first: u64, n: u64, ts: i64) -> RecordBatch {
    RecordBatch {
        agent,
        records: (first..first + n)
            .map(|seq| Record {
                seq: Seq(seq),
                ts,
                stream: StreamKind::Stdout,
                data: vec![b'y'; 100],
                partial: false,
            })
            .collect(),
    }
}

/// A CURVE PUB/SUB pair over loopback TCP, subscribed to `log.` and proven live.
async fn raw_pair() -> (Async, Async) {
    let curve = raw::Curve::new();
    let context = drover_zmq::context();
    let publisher = context.socket(zmq::PUB).unwrap();
    curve.server(&publisher);
    // Room for the whole run, so the baseline loses nothing either.
    publisher.set_sndhwm(100_000).unwrap();
    publisher.bind("tcp://127.0.0.1:0").unwrap();
    let endpoint = publisher.get_last_endpoint().unwrap().unwrap();
    let subscriber = context.socket(zmq::SUB).unwrap();
    curve.client(&subscriber);
    subscriber.set_rcvhwm(100_000).unwrap();
    subscriber.set_subscribe(b"log.").unwrap();
    subscriber.connect(&endpoint).unwrap();
    let (publisher, subscriber) = (
        Async::new(publisher).unwrap(),
        Async::new(subscriber).unwrap(),
    );
    // Wait until the subscription is live.
    loop {
        publisher.send(&[b"log.probe", b""]).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(50), subscriber.recv())
            .await
            .is_ok()
        {
            break;
        }
    }
    (publisher, subscriber)
}

/// Encoded batches of 256 records over raw PUB/SUB, decoded on the far side.
async fn raw_pubsub_throughput(lines: u64) -> f64 {
    let (publisher, subscriber) = raw_pair().await;
    let agent = AgentId::new();
    let topic = format!("log.{agent}").into_bytes();
    let receiver = tokio::spawn(async move {
        let mut got = 0;
        while got < lines {
            let frames = subscriber.recv().await.unwrap();
            if frames[1].is_empty() {
                continue;
            }
            let batch: RecordBatch = drover_proto::decode(&frames[1], usize::MAX).unwrap();
            got += batch.records.len() as u64;
        }
        Instant::now()
    });
    let started = Instant::now();
    let mut seq = 1;
    while seq <= lines {
        let n = 256.min(lines - seq + 1);
        let body = drover_proto::encode(&batch_of(agent, seq, n, now_ns())).unwrap();
        publisher.send(&[&topic, &body]).await.unwrap();
        seq += n;
        // Pace to what the subscriber can take: the raw PUB drops beyond its queue.
        if seq % (256 * 64) == 1 {
            tokio::task::yield_now().await;
        }
    }
    let done = receiver.await.unwrap();
    lines as f64 / (done - started).as_secs_f64()
}

/// One record per message at RATE/s over raw PUB/SUB; latency from send to decode.
async fn raw_pubsub_latency() -> Vec<Duration> {
    let (publisher, subscriber) = raw_pair().await;
    let agent = AgentId::new();
    let topic = format!("log.{agent}").into_bytes();
    let receiver = tokio::spawn(async move {
        let mut latencies = Vec::with_capacity(LATENCY_LINES as usize);
        while (latencies.len() as u64) < LATENCY_LINES {
            let frames = subscriber.recv().await.unwrap();
            if frames[1].is_empty() {
                continue;
            }
            let batch: RecordBatch = drover_proto::decode(&frames[1], usize::MAX).unwrap();
            let now = now_ns();
            for record in batch.records {
                latencies.push(Duration::from_nanos((now - record.ts).max(0) as u64));
            }
        }
        latencies
    });
    let started = Instant::now();
    for i in 0..LATENCY_LINES {
        let due = started + Duration::from_nanos(i * 1_000_000_000 / RATE);
        let wait = due.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let body = drover_proto::encode(&batch_of(agent, i + 1, 1, now_ns())).unwrap();
        publisher.send(&[&topic, &body]).await.unwrap();
    }
    receiver.await.unwrap()
}

/// The paced writer as an agent; latency from its write to the follower's receipt.
async fn drover_latency(client: &Client) -> Vec<Duration> {
    let me = std::env::current_exe()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let script = format!("read go; exec '{me}' --writer {RATE} {LATENCY_LINES}");
    let mut agent_spec = spec(vec!["sh".into(), "-c".into(), script]);
    agent_spec.stdin = drover_proto::StdinMode::Pipe;
    let agent = client.spawn(agent_spec).await.unwrap();
    let id = agent.id.to_string();
    let mut follower = client
        .follow(
            Selection::Agents(vec![id.clone()]),
            FollowOptions {
                until_exit: true,
                ..FollowOptions::default()
            },
        )
        .await
        .unwrap();
    client.write_stdin(&id, b"go\n".to_vec()).await.unwrap();
    let mut latencies = Vec::with_capacity(LATENCY_LINES as usize);
    while let Some(event) = follower.next().await.unwrap() {
        if let FollowEvent::Records { records, .. } = event {
            let now = now_ns();
            for record in records {
                let written: i64 = std::str::from_utf8(&record.data[..20])
                    .unwrap()
                    .parse()
                    .unwrap();
                latencies.push(Duration::from_nanos((now - written).max(0) as u64));
            }
        }
    }
    assert_eq!(latencies.len() as u64, LATENCY_LINES);
    latencies
}

fn print_latency(name: &str, latencies: &[Duration]) {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q) as usize];
    println!(
        "  {name:<27}: p50 {:>7.0} us   p99 {:>7.0} us   max {:>7.0} us",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6
    );
}
