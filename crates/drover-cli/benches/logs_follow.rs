//! Follow throughput (issue 14, item 4): lines/s that reach a pipe through `drover logs -f` and
//! through an SSE follow (`curl` on the daemon's unix socket), beside pueue's `follow` and the
//! raw pipe, on the same workload in the same run.
//!
//! `cargo bench -p drover-cli --bench logs_follow` (`DROVER_BENCH_LINES`, default 1,000,000;
//! `DROVER_BENCH_ROUNDS`, default 3; pueue is measured when `pueued` and `pueue` are on `PATH`
//! or in `DROVER_BENCH_PUEUE`, a directory)
//!
//! The workload: an agent prints `ready`, waits on a FIFO, then `yes | head -n N` writes N lines
//! of 100 bytes. The follower is started first and reads `ready`, so it is live; the clock runs
//! from opening the FIFO (the go) to the follower's Nth line reaching this process's pipe.
//! Every follower must deliver exactly `ready` and the N lines.
//!
//! - **raw pipe**: `yes | head -n N` straight into the counting pipe (no daemon at all).
//! - **pueue follow**: the same agent as a pueue task; `pueue follow` tails its log file.
//! - **logs -f live**: `drover logs -f` on the local daemon (ipc), while the agent writes.
//! - **logs -f catch-up**: `drover logs -f` started on the same agent once it ended: the whole
//!   log from the store, then the end (the clock starts at the process start).
//! - **SSE live / catch-up**: the same through `GET /v1/agents/{id}/logs?follow=true`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn drover() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// 99 bytes and a newline.
fn line() -> String {
    "x".repeat(99)
}

/// Reads `child`'s stdout until `want` matches of `pattern` were seen (lines: `b"\n"`); returns
/// when the first match arrived and when the last did. Panics if the stream ends early.
fn count(child: &mut Child, pattern: &[u8], want: u64) -> (Instant, Instant) {
    let mut out = child.stdout.take().expect("stdout");
    let finder = memchr::memmem::Finder::new(pattern);
    let mut buf = vec![0u8; 1 << 18];
    let mut carry: Vec<u8> = Vec::new();
    let mut seen = 0u64;
    let mut first = None;
    loop {
        let got = out.read(&mut buf).expect("read");
        assert!(got > 0, "the follower ended after {seen} of {want}");
        carry.extend_from_slice(&buf[..got]);
        let mut consumed = 0;
        for at in finder.find_iter(&carry) {
            seen += 1;
            consumed = at + pattern.len();
            if first.is_none() {
                first = Some(Instant::now());
            }
            if seen == want {
                return (first.expect("first"), Instant::now());
            }
        }
        let keep_from = consumed.max(carry.len().saturating_sub(pattern.len() - 1));
        carry.drain(..keep_from);
    }
}

/// The agent's command: `ready`, wait for the go on `fifo`, then `n` lines.
fn workload(fifo: &Path, n: u64) -> String {
    format!(
        "echo ready; cat {} > /dev/null; yes {} | head -n {n}",
        fifo.display(),
        line()
    )
}

fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(status.success());
    path
}

/// Opening the FIFO for writing and closing it lets the agent go; the returned instant is
/// just before.
fn go(fifo: &Path) -> Instant {
    let at = Instant::now();
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .open(fifo)
            .expect("go"),
    );
    at
}

/// Start `follower` (reading an agent that prints `ready` and waits on `fifo`), wait for the
/// ready line, let the agent go; lines/s from the go to the last of `n` lines.
fn live(mut follower: Command, fifo: &Path, n: u64, pattern: &[u8]) -> f64 {
    let mut child = follower.stdout(Stdio::piped()).spawn().expect("follower");
    let counter = std::thread::scope(|scope| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let handle = scope.spawn(|| {
            let (_, last) = count_after_first(&mut child, pattern, n + 1, ready_tx);
            last
        });
        ready_rx.recv().expect("ready line");
        let start = go(fifo);
        let last = handle.join().expect("counter");
        last - start
    });
    let _ = child.kill();
    let _ = child.wait();
    n as f64 / counter.as_secs_f64()
}

/// [`count`], telling `ready` when the first match arrived.
fn count_after_first(
    child: &mut Child,
    pattern: &[u8],
    want: u64,
    ready: std::sync::mpsc::Sender<()>,
) -> (Instant, Instant) {
    // The first match is the ready line: read it alone, then count the rest.
    let mut out = child.stdout.take().expect("stdout");
    let mut seen_ready = Vec::new();
    let mut byte = [0u8; 1];
    let finder = memchr::memmem::Finder::new(pattern);
    while finder.find(&seen_ready).is_none() {
        let got = out.read(&mut byte).expect("read");
        assert!(got > 0, "the follower ended before its first line");
        seen_ready.push(byte[0]);
    }
    let first = Instant::now();
    ready.send(()).expect("send");
    child.stdout = Some(out);
    let (_, last) = count(child, pattern, want - 1);
    (first, last)
}

/// Lines/s of a follower that reads a finished agent's whole log (`n` lines after `ready`).
fn catch_up(mut follower: Command, n: u64, pattern: &[u8]) -> f64 {
    let start = Instant::now();
    let mut child = follower.stdout(Stdio::piped()).spawn().expect("follower");
    let (_, last) = count(&mut child, pattern, n + 1);
    let _ = child.kill();
    let _ = child.wait();
    n as f64 / (last - start).as_secs_f64()
}

struct Daemon {
    child: Child,
    state: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(state: &Path) -> Daemon {
        std::fs::create_dir_all(state).unwrap();
        std::fs::set_permissions(state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let mut child = Command::new(drover())
            .args(["serve", "--control", "tcp://127.0.0.1:0", "--pub"])
            .args(["tcp://127.0.0.1:0", "--http", "127.0.0.1:0", "--state-dir"])
            .arg(state)
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("drover serve");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("ready line");
        assert!(ready.starts_with("drover ready"), "{ready}");
        Daemon {
            child,
            state: state.to_owned(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(drover());
        command
            .args(args)
            .env(
                "DROVER_CONTROL",
                format!("ipc://{}", self.state.join("control.sock").display()),
            )
            .env_remove("DROVER_CONTEXT")
            .env("DROVER_CONFIG_DIR", self.state.join("config"));
        command
    }

    fn spawn(&self, script: &str) -> String {
        let output = self
            .command(&["spawn", "--", "sh", "-c", script])
            .output()
            .expect("spawn");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn sse(&self, id: &str) -> Command {
        let mut command = Command::new("curl");
        command
            .args(["-sN", "--unix-socket"])
            .arg(self.state.join("http.sock"))
            .args(["-H", "Accept: text/event-stream"])
            .arg(format!("http://localhost/v1/agents/{id}/logs?follow=true"));
        command
    }
}

/// A pueue daemon of its own, when pueue is installed.
struct Pueue {
    child: Child,
    config: PathBuf,
    bin: PathBuf,
}

impl Drop for Pueue {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pueue {
    fn start(dir: &Path) -> Option<Pueue> {
        let bin = std::env::var_os("DROVER_BENCH_PUEUE")
            .map(PathBuf::from)
            .into_iter()
            .chain(std::env::split_paths(
                &std::env::var_os("PATH").unwrap_or_default(),
            ))
            .find(|d| d.join("pueued").is_file() && d.join("pueue").is_file())?;
        let (data, run) = (dir.join("data"), dir.join("run"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        let config = dir.join("pueue.yml");
        std::fs::write(
            &config,
            format!(
                "shared:\n  pueue_directory: {}\n  runtime_directory: {}\n  use_unix_socket: true\n",
                data.display(),
                run.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin.join("pueued"))
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pueued");
        let pueue = Pueue { child, config, bin };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pueue
            .client(&["status"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            assert!(Instant::now() < deadline, "pueued did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(pueue)
    }

    fn client(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.bin.join("pueue"));
        command.arg("-c").arg(&self.config).args(args);
        command
    }

    fn add(&self, script: &str) -> String {
        let output = self
            .client(&["add", "-p", "--", script])
            .output()
            .expect("add");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("DROVER_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = std::env::var("DROVER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&dir.path().join("state"));
    let pueue = Pueue::start(&dir.path().join("pueue"));
    if pueue.is_none() {
        println!("pueue: not found (put pueued and pueue on PATH or in DROVER_BENCH_PUEUE)");
    }
    println!("{n} lines of 100 bytes, {rounds} rounds; M lines/s:");
    println!("round | raw pipe | pueue follow | logs -f live | logs -f catch-up | SSE live | SSE catch-up");
    let names = [
        "raw",
        "pueue",
        "logs live",
        "logs catch-up",
        "sse live",
        "sse catch-up",
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        let raw = {
            let mut command = Command::new("sh");
            command.args(["-c", &format!("yes {} | head -n {n}", line())]);
            catch_up_lines(command, n)
        };
        let pueue_rate = pueue.as_ref().map(|pueue| {
            let fifo = fifo(dir.path(), &format!("pueue{round}"));
            let id = pueue.add(&workload(&fifo, n));
            live(pueue.client(&["follow", &id]), &fifo, n, b"\n")
        });
        let fifo_logs = fifo(dir.path(), &format!("logs{round}"));
        let id = daemon.spawn(&workload(&fifo_logs, n));
        let logs_live = live(daemon.command(&["logs", "-f", &id]), &fifo_logs, n, b"\n");
        let logs_catch_up = catch_up(daemon.command(&["logs", "-f", &id]), n, b"\n");
        let fifo_sse = fifo(dir.path(), &format!("sse{round}"));
        let sse_id = daemon.spawn(&workload(&fifo_sse, n));
        let event = b"event: log\n";
        let sse_live = live(daemon.sse(&sse_id), &fifo_sse, n, event);
        let sse_catch_up = catch_up(daemon.sse(&sse_id), n, event);
        let row = [
            Some(raw),
            pueue_rate,
            Some(logs_live),
            Some(logs_catch_up),
            Some(sse_live),
            Some(sse_catch_up),
        ];
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.map_or("-".to_owned(), |v| format!("{:.2}", v / 1e6)))
            .collect();
        println!("{round} | {}", cells.join(" | "));
        for (figure, value) in figures.iter_mut().zip(row) {
            figure.extend(value);
        }
        for id in [&id, &sse_id] {
            let _ = daemon.command(&["rm", id]).output();
        }
    }
    let medians: Vec<Option<f64>> = figures
        .iter_mut()
        .map(|f| (!f.is_empty()).then(|| median(f)))
        .collect();
    println!("median:");
    for (name, value) in names.iter().zip(&medians) {
        if let Some(value) = value {
            println!("  {name}: {:.2} M lines/s", value / 1e6);
        }
    }
    if let (Some(pueue), Some(logs)) = (medians[1], medians[2]) {
        println!("  logs -f live / pueue follow: {:.2}x", logs / pueue);
    }
    if let (Some(raw), Some(logs)) = (medians[0], medians[2]) {
        println!("  logs -f live / raw pipe: {:.2}x", logs / raw);
    }
    let _ = std::io::stdout().flush();
}

/// Lines/s of a command that prints `n` lines into the counting pipe, from its start.
fn catch_up_lines(mut command: Command, n: u64) -> f64 {
    let start = Instant::now();
    let mut child = command.stdout(Stdio::piped()).spawn().expect("command");
    let (_, last) = count(&mut child, b"\n", n);
    let _ = child.wait();
    n as f64 / (last - start).as_secs_f64()
}
