//! Supervisor benchmark: spawn+reap rate and capture throughput, each next to a bare baseline
//! measured in the same run, so the ratio means something on a noisy machine.
//!
//! Run: `cargo bench -p drover-supervisor --bench supervisor`

use std::io::Read;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_supervisor::{
    spawn, CapturedRecord, Command, Observer, Status, StdinMode, SupervisorConfig,
};

const SPAWNS: u32 = 300;
const LINES: u64 = 2_000_000;
const LINE_LEN: u64 = 100;
const ROUNDS: usize = 5;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Counts what it is given, like a daemon observer that only forwards.
#[derive(Default)]
struct Count {
    bytes: AtomicU64,
    records: AtomicU64,
}

impl Observer for Count {
    fn records(&self, batch: Vec<CapturedRecord>) {
        self.records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let bytes: usize = batch.iter().map(|r| r.data.len()).sum();
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    fn status(&self, _: &Status) {}
}

fn command(program: &str, args: &[&str]) -> Command {
    Command {
        program: program.into(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
        cwd: None,
        stdin: StdinMode::Null,
    }
}

fn producer() -> String {
    // 99 characters + '\n' = 100-byte lines.
    format!("yes {} | head -n {LINES}", "x".repeat(99))
}

async fn supervised_spawns() -> Duration {
    let started = Instant::now();
    for _ in 0..SPAWNS {
        let handle = spawn(
            command("/bin/true", &[]),
            SupervisorConfig::default(),
            Arc::new(Count::default()),
        );
        handle.wait().await;
    }
    started.elapsed()
}

fn bare_spawns() -> Result<Duration> {
    let started = Instant::now();
    for _ in 0..SPAWNS {
        std::process::Command::new("/bin/true").spawn()?.wait()?;
    }
    Ok(started.elapsed())
}

async fn supervised_capture() -> Result<(Duration, u64, u64)> {
    let count = Arc::new(Count::default());
    let started = Instant::now();
    let handle = spawn(
        command("/bin/sh", &["-c", &producer()]),
        SupervisorConfig::default(),
        count.clone(),
    );
    let end = handle.wait().await;
    let elapsed = started.elapsed();
    if !matches!(end, Status::Exited { code: 0, .. }) {
        return Err(format!("producer ended with {end:?}").into());
    }
    Ok((
        elapsed,
        count.bytes.load(Ordering::Relaxed),
        count.records.load(Ordering::Relaxed),
    ))
}

fn bare_capture() -> Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", &producer()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    child.wait()?;
    Ok((started.elapsed(), bytes))
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut sup_spawn, mut bare_spawn) = (Duration::MAX, Duration::MAX);
    let (mut sup_cap, mut bare_cap) = (Duration::MAX, Duration::MAX);
    let (mut records, mut bytes) = (0, 0);
    // Interleaved rounds, best of each: both sides see the same machine noise.
    for _ in 0..ROUNDS {
        bare_spawn = bare_spawn.min(bare_spawns()?);
        sup_spawn = sup_spawn.min(rt.block_on(supervised_spawns()));
        let (d, b) = bare_capture()?;
        bare_cap = bare_cap.min(d);
        if b != LINES * LINE_LEN {
            return Err(format!("bare read {b} bytes").into());
        }
        let (d, b, r) = rt.block_on(supervised_capture())?;
        sup_cap = sup_cap.min(d);
        (bytes, records) = (b, r);
        if b != LINES * LINE_LEN || r != LINES {
            return Err(format!("supervisor captured {b} bytes in {r} records").into());
        }
    }
    let rate = |d: Duration| f64::from(SPAWNS) / d.as_secs_f64();
    println!("spawn+reap /bin/true x{SPAWNS} (best of {ROUNDS})");
    println!(
        "  bare std::process::Command : {:>9.0} spawns/s",
        rate(bare_spawn)
    );
    println!(
        "  supervisor                 : {:>9.0} spawns/s",
        rate(sup_spawn)
    );
    println!(
        "  ratio                      : {:>9.1} %",
        100.0 * rate(sup_spawn) / rate(bare_spawn)
    );
    println!(
        "capture of {LINES} x {LINE_LEN}-byte lines ({} MB, best of {ROUNDS})",
        bytes / 1_000_000
    );
    let lines = |d: Duration| LINES as f64 / d.as_secs_f64();
    println!(
        "  bare pipe read             : {:>9.0} MB/s {:>12.0} lines/s",
        mb_per_s(bytes, bare_cap),
        lines(bare_cap)
    );
    println!(
        "  supervisor (records)       : {:>9.0} MB/s {:>12.0} lines/s ({records} records)",
        mb_per_s(bytes, sup_cap),
        lines(sup_cap)
    );
    println!(
        "  ratio                      : {:>9.1} %",
        100.0 * bare_cap.as_secs_f64() / sup_cap.as_secs_f64()
    );
    Ok(())
}
