//! Holder benchmark: spawn rate as live agents accumulate, with holders and on the direct
//! (in-process) path, beside bare spawns from the same process; memory per holder and per agent
//! in the daemon; re-attach time.
//!
//! `cargo bench -p drover-daemon --bench holders` (`DROVER_BENCH_LEVELS=0,1000,3000` sets the
//! live-agent levels, `DROVER_BENCH_SPAWNS=300` the spawns measured at each level,
//! `DROVER_BENCH_MODES=held,direct` which paths run, `interleaved` the comparison below alone)
//!
//! It starts with the comparison that gives the held / direct ratio: both daemons live at once
//! and their spawn RPCs in alternating blocks, so both paths meet the same moments of a machine
//! whose speed drifts.
//!
//! The daemon runs in this process, so "bare" — `std::process::Command` spawning and reaping
//! `/bin/true` from here — pays for this process's descriptor table exactly as the direct path
//! does: `clone` copies the table and `exec` walks it. Held agents are started by the spawner,
//! whose table stays at a handful of descriptors. Live agents are `sleep 3600`; the measured
//! spawns are `/bin/true` (spawn RPCs answered once the process runs), one after another and
//! from 8 concurrent callers; each figure is the best of three rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use drover_client::Client;
use drover_daemon::{Config, ShutdownPolicy};
use drover_proto::AgentSpec;
use tokio::sync::oneshot;

fn levels() -> Vec<usize> {
    std::env::var("DROVER_BENCH_LEVELS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![0, 1000, 3000])
}

fn spawns() -> usize {
    std::env::var("DROVER_BENCH_SPAWNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn argv(words: &[&str]) -> AgentSpec {
    AgentSpec {
        argv: words.iter().map(|w| (*w).to_owned()).collect(),
        ..AgentSpec::default()
    }
}

/// A daemon in this process on `dir`, and a client on its ipc socket.
struct Running {
    client: Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), drover_daemon::DaemonError>>,
}

async fn start(dir: &Path, held: bool, on_shutdown: ShutdownPolicy) -> (Running, Duration) {
    let mut config = Config::ephemeral(dir);
    config.ipc = true;
    config.max_agents = 3_500;
    config.on_shutdown = on_shutdown;
    config.default_grace = Duration::from_secs(2);
    if !held {
        config.holder = None;
    }
    assert!(
        !held || config.holder.is_some(),
        "no drover-holder executable found beside the bench (build the daemon's binaries)"
    );
    // A daemon just stopped in this process may still hold its ipc sockets for a moment.
    let mut tries = 0;
    let listeners = loop {
        match drover_daemon::bind(&config).await {
            Ok(listeners) => break listeners,
            Err(error) if tries < 100 => {
                tries += 1;
                let _ = error;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("bind: {error}"),
        }
    };
    let begun = Instant::now();
    let ipc = listeners.addresses.ipc.clone().expect("ipc endpoint");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(drover_daemon::run(config, listeners, async {
        let _ = stopped.await;
    }));
    let client = Client::connect(&ipc).await.expect("connect");
    // `run` re-attaches before it serves, so the first answer marks the end of re-attaching.
    client.health().await.expect("health");
    let ready = begun.elapsed();
    (Running { client, stop, task }, ready)
}

impl Running {
    async fn shutdown(self) {
        drop(self.client);
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Bare spawn + reap of `/bin/true` from this process, per second.
fn bare(n: usize) -> f64 {
    let begun = Instant::now();
    for _ in 0..n {
        std::process::Command::new("true")
            .status()
            .expect("spawn true");
    }
    n as f64 / begun.elapsed().as_secs_f64()
}

/// Sequential spawn RPCs of `/bin/true`, per second.
async fn rpc(client: &Client, n: usize) -> f64 {
    let begun = Instant::now();
    for _ in 0..n {
        client.spawn(argv(&["true"])).await.expect("spawn");
    }
    n as f64 / begun.elapsed().as_secs_f64()
}

/// Spawn RPCs of `/bin/true` from 8 concurrent callers, per second.
async fn rpc_concurrent(client: &Client, n: usize) -> f64 {
    let begun = Instant::now();
    let per = n.div_ceil(8);
    let callers = (0..8).map(|_| async {
        for _ in 0..per {
            client.spawn(argv(&["true"])).await?;
        }
        Ok::<(), drover_client::ClientError>(())
    });
    for result in futures::future::join_all(callers).await {
        if let Err(error) = result {
            eprintln!("a concurrent spawn failed: {error}");
            return f64::NAN;
        }
    }
    (per * 8) as f64 / begun.elapsed().as_secs_f64()
}

/// Spawns `sleep 3600` agents until `target` are live (eight requests in flight).
async fn fill(client: &Client, live: &mut usize, target: usize) {
    while *live < target {
        let batch = (target - *live).min(8);
        let spawns = (0..batch).map(|_| client.spawn(argv(&["sleep", "3600"])));
        for result in futures::future::join_all(spawns).await {
            result.expect("spawn a sleeper");
        }
        *live += batch;
    }
    // The short agents of the previous level have ended by now; wait for it.
    loop {
        let health = client.health().await.unwrap();
        let running: u64 = health
            .agents
            .iter()
            .filter(|(state, _)| {
                !matches!(
                    state.as_str(),
                    "exited" | "killed" | "failed_to_start" | "lost"
                )
            })
            .map(|(_, n)| *n)
            .sum();
        if running as usize <= target {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Lines the paced writer prints, one every 100 µs (10,000 lines/s).
const PACED_LINES: u64 = 20_000;

/// Run as the paced writer (this program, re-executed): each line is the unix-nanosecond time
/// it was written. It sleeps to each line's due time (deadlines counted from the start, so no
/// drift; timer slack 1 ns), as
/// an agent printing 10,000 lines/s does; `DROVER_BENCH_PACE=spin` spins to it instead, which
/// keeps one of the machine's cores busy for the whole run (what this bench did before).
fn paced_writer() {
    use std::io::Write;
    let spin = std::env::var("DROVER_BENCH_PACE").as_deref() == Ok("spin");
    nix::sys::prctl::set_timerslack(1).unwrap();
    let begun = Instant::now();
    let mut out = std::io::stdout().lock();
    for i in 0..PACED_LINES {
        let due = begun + Duration::from_micros(100 * i);
        if spin {
            while Instant::now() < due {
                std::hint::spin_loop();
            }
        } else if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        writeln!(out, "{}", drover_proto::now_ns()).unwrap();
        out.flush().unwrap();
    }
}

/// Write → receive latency (p50, p99, in µs) of lines written at 10,000 lines/s, received by a
/// `Client::follow` on the same daemon.
async fn latency(client: &Client) -> (f64, f64) {
    let exe = std::env::current_exe().unwrap().display().to_string();
    let spec = AgentSpec {
        env: [
            ("DROVER_BENCH_WRITER".to_owned(), "1".to_owned()),
            (
                "DROVER_BENCH_PACE".to_owned(),
                std::env::var("DROVER_BENCH_PACE").unwrap_or_default(),
            ),
        ]
        .into(),
        ..argv(&[&exe])
    };
    let agent = client.spawn(spec).await.expect("spawn the writer");
    let options = drover_client::FollowOptions {
        since_seq: Some(drover_proto::Seq(1)),
        until_exit: true,
        ..Default::default()
    };
    let mut follower = client
        .follow(
            drover_client::Selection::Agents(vec![agent.id.to_string()]),
            options,
        )
        .await
        .expect("follow");
    let mut micros = Vec::with_capacity(PACED_LINES as usize);
    while let Some(event) = follower.next().await.expect("follow") {
        match event {
            drover_client::FollowEvent::Records { records, .. } => {
                let now = drover_proto::now_ns();
                for record in records {
                    let text = std::str::from_utf8(&record.data).unwrap().trim();
                    let written: i64 = text.parse().unwrap();
                    micros.push((now - written) as f64 / 1e3);
                }
            }
            drover_client::FollowEvent::Exit(_) => break,
            _ => {}
        }
    }
    assert_eq!(micros.len() as u64, PACED_LINES, "every line received");
    micros.sort_by(f64::total_cmp);
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn kib(field: &str, path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Private_Dirty (KiB) of every holder under `dir`.
fn holder_private(dir: &Path) -> Vec<u64> {
    let marker = dir.join("holders");
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // A holder is found by its open spool (forked holders keep the spawner's command
        // line); the link follows its directory's renames.
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds_a_spool = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                target.starts_with(&marker) && target.file_name().is_some_and(|n| n == "spool")
            })
        });
        if holds_a_spool {
            if let Some(kb) = kib("Private_Dirty:", &format!("/proc/{pid}/smaps_rollup")) {
                out.push(kb);
            }
        }
    }
    out.sort_unstable();
    out
}

/// One level's figures: live agents, open fds, and the best of three rounds of bare spawns,
/// sequential spawn RPCs and concurrent spawn RPCs.
type Row = (usize, usize, f64, f64, f64);

async fn run_mode(held: bool, levels: &[usize], n: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    // Held agents are left running at the end, for the re-attach measurement.
    let policy = if held {
        ShutdownPolicy::Leave
    } else {
        ShutdownPolicy::Stop
    };
    let (daemon, _) = start(dir.path(), held, policy).await;
    let (p50, p99) = latency(&daemon.client).await;
    println!(
        "{}: write -> receive at 10,000 lines/s ({PACED_LINES} lines, Client::follow): p50 {p50:.0} µs, p99 {p99:.0} µs",
        if held { "holders" } else { "direct" }
    );
    let mut live = 0;
    let mut rows = Vec::new();
    let rss0 = kib("VmRSS:", "/proc/self/status").unwrap_or(0);
    for &level in levels {
        fill(&daemon.client, &mut live, level).await;
        let fds = open_fds();
        let (mut best_bare, mut best_rpc, mut best_many) = (0f64, 0f64, 0f64);
        for _ in 0..3 {
            best_bare = best_bare.max(bare(n));
            best_rpc = best_rpc.max(rpc(&daemon.client, n).await);
            best_many = best_many.max(rpc_concurrent(&daemon.client, n).await);
        }
        println!(
            "{} | {level} | {fds} | {best_bare:.0} | {best_rpc:.0} | {:.2} | {best_many:.0} |",
            if held { "holders" } else { "direct" },
            best_rpc / best_bare
        );
        rows.push((level, fds, best_bare, best_rpc, best_many));
    }
    let top = *levels.iter().max().unwrap_or(&0);
    if held && top > 0 {
        let rss = kib("VmRSS:", "/proc/self/status").unwrap_or(0);
        let private = holder_private(dir.path());
        let median = private.get(private.len() / 2).copied().unwrap_or(0);
        println!(
            "memory at {top} live held agents: holder Private_Dirty median {median} KiB \
             (min {} KiB, max {} KiB, {} holders); bench process RSS grew {} KiB = {:.1} KiB per agent",
            private.first().copied().unwrap_or(0),
            private.last().copied().unwrap_or(0),
            private.len(),
            rss.saturating_sub(rss0),
            rss.saturating_sub(rss0) as f64 / top as f64
        );
        // Re-attach: leave every agent running, start a new daemon on the same directory.
        daemon.shutdown().await;
        let (again, ready) = start(dir.path(), held, ShutdownPolicy::Stop).await;
        let reattached = again.client.health().await.unwrap();
        println!(
            "re-attach after a restart: {:.0} ms from bound to first answer, {} agents live again",
            ready.as_secs_f64() * 1e3,
            reattached.agents.get("running").copied().unwrap_or(0)
        );
        again.shutdown().await;
    } else {
        daemon.shutdown().await;
    }
    rows
}

/// Blocks of spawns in the interleaved comparison, and spawns per block.
const BLOCKS: usize = 20;
const PER_BLOCK: usize = 30;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Held and direct spawn RPCs in alternating blocks, two daemons live at once, so the ratio
/// compares the two paths over the same moments of this machine (whose speed drifts by more
/// than the difference between them within a minute).
/// What the state directories are on, as `mountinfo` says: the filesystem, its device, and for
/// ext4 whether it has a journal (without one, ext4 scans past recently removed inodes at each
/// file creation, which slows held spawns: BENCHMARKS.md, Holders).
fn filesystem_of(path: &Path) -> String {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Fields: id parent major:minor root mount-point options ... - fstype source super-options.
    let best = mountinfo
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let mount = *fields.get(4)?;
            let fstype = *fields.get(dash + 1)?;
            let source = *fields.get(dash + 2)?;
            path.starts_with(mount)
                .then_some((mount.len(), fstype, source))
        })
        .max_by_key(|(len, ..)| *len);
    let Some((_, fstype, source)) = best else {
        return "an unknown filesystem".to_owned();
    };
    let journal = match (fstype, source.strip_prefix("/dev/")) {
        ("ext4", Some(device)) => {
            if Path::new(&format!("/proc/fs/jbd2/{device}-8")).exists() {
                ", with a journal"
            } else {
                ", without a journal"
            }
        }
        _ => "",
    };
    format!("{fstype} on {source}{journal}")
}

async fn interleaved() {
    let (held_dir, direct_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    println!(
        "state directories in {} ({})",
        std::env::temp_dir().display(),
        filesystem_of(held_dir.path())
    );
    let (held, _) = start(held_dir.path(), true, ShutdownPolicy::Stop).await;
    let (direct, _) = start(direct_dir.path(), false, ShutdownPolicy::Stop).await;
    // Warm both paths (the spawner's pool, the daemons' first agents).
    rpc(&held.client, PER_BLOCK).await;
    rpc(&direct.client, PER_BLOCK).await;
    let (mut seq, mut many) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let mut ratios = (Vec::new(), Vec::new());
    for block in 0..BLOCKS {
        // Which path goes first alternates too.
        let order = if block % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut s = [0f64; 2];
        let mut m = [0f64; 2];
        for path in order {
            let client = if path == 0 {
                &held.client
            } else {
                &direct.client
            };
            s[path] = rpc(client, PER_BLOCK).await;
            m[path] = rpc_concurrent(client, PER_BLOCK.max(8)).await;
        }
        for path in 0..2 {
            seq[path].push(s[path]);
            many[path].push(m[path]);
        }
        ratios.0.push(s[0] / s[1]);
        ratios.1.push(m[0] / m[1]);
    }
    let range = |r: &[f64]| {
        let mut r = r.to_vec();
        r.sort_by(f64::total_cmp);
        (r[r.len() / 10], r[r.len() - 1 - r.len() / 10])
    };
    let (s_lo, s_hi) = range(&ratios.0);
    let (m_lo, m_hi) = range(&ratios.1);
    println!(
        "interleaved, {BLOCKS} blocks of {PER_BLOCK} spawn RPCs of /bin/true, 0 live agents (median block, spawns/s):"
    );
    println!(
        "  sequential: holders {:.0} /s, direct {:.0} /s, ratio {:.2} (median of block pairs; 10th-90th percentile {s_lo:.2}-{s_hi:.2})",
        median(seq[0].clone()),
        median(seq[1].clone()),
        median(ratios.0.clone())
    );
    println!(
        "  8 callers:  holders {:.0} /s, direct {:.0} /s, ratio {:.2} (10th-90th percentile {m_lo:.2}-{m_hi:.2})",
        median(many[0].clone()),
        median(many[1].clone()),
        median(ratios.1.clone())
    );
    // Agents that do not end leave no holder to recycle: every spawn takes a holder started
    // ahead. (Live agents pile up here, 300 per path, so this pass comes last.)
    let mut long = ([Vec::new(), Vec::new()], Vec::new());
    for block in 0..BLOCKS / 2 {
        let order = if block % 2 == 0 { [0, 1] } else { [1, 0] };
        let mut s = [0f64; 2];
        for path in order {
            let client = if path == 0 {
                &held.client
            } else {
                &direct.client
            };
            let begun = Instant::now();
            for _ in 0..PER_BLOCK {
                client.spawn(argv(&["sleep", "3600"])).await.expect("spawn");
            }
            s[path] = PER_BLOCK as f64 / begun.elapsed().as_secs_f64();
        }
        long.0[0].push(s[0]);
        long.0[1].push(s[1]);
        long.1.push(s[0] / s[1]);
    }
    let (l_lo, l_hi) = range(&long.1);
    println!(
        "  long-lived (sleep 3600, sequential, {} blocks; none ends, so none recycled): holders {:.0} /s, direct {:.0} /s, ratio {:.2} (10th-90th percentile {l_lo:.2}-{l_hi:.2})",
        BLOCKS / 2,
        median(long.0[0].clone()),
        median(long.0[1].clone()),
        median(long.1.clone())
    );
    held.shutdown().await;
    direct.shutdown().await;
}

fn main() {
    if std::env::var_os("DROVER_BENCH_WRITER").is_some() {
        return paced_writer();
    }
    // Each path runs in a process of its own (this program, run again), so neither inherits
    // the other's descriptors, threads or leftovers; both run within one invocation.
    let Ok(modes) = std::env::var("DROVER_BENCH_MODES") else {
        let exe = std::env::current_exe().unwrap();
        for mode in ["interleaved", "held", "direct"] {
            let status = std::process::Command::new(&exe)
                .env("DROVER_BENCH_MODES", mode)
                .status()
                .unwrap();
            assert!(status.success(), "the {mode} run failed: {status}");
        }
        return;
    };
    // The daemon raises the soft open-files limit itself; the bench's own baseline needs it too.
    let _ = drover_daemon::fdlimit::raise();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if modes == "interleaved" {
        runtime.block_on(interleaved());
        return;
    }
    let levels = levels();
    let n = spawns();
    for held in [true, false] {
        if !modes.contains(if held { "held" } else { "direct" }) {
            continue;
        }
        let rows = runtime.block_on(run_mode(held, &levels, n));
        println!(
            "\n{} ({n} spawns per level)",
            if held {
                "holders"
            } else {
                "direct (in-process)"
            }
        );
        println!(
            "| live agents | open fds | bare spawn+reap /s | spawn RPC /s (sequential) | RPC / bare | spawn RPC /s (8 callers) |"
        );
        println!("|---|---|---|---|---|---|");
        for (level, fds, bare, rpc, many) in rows {
            println!(
                "| {level} | {fds} | {bare:.0} | {rpc:.0} | {:.2} | {many:.0} |",
                rpc / bare
            );
        }
    }
}
