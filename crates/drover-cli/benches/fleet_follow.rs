//! Follow throughput from two hosts at once, next to the same follow from one host, measured in
//! the same run: the real `drover logs -f` over two contexts (the fleet's merged follow, each
//! line prefixed `[HOST/NAME]`) against two real daemons on loopback TCP with CURVE; the
//! baseline is `drover logs -f` of the same number of agents and lines on one daemon (the
//! single-daemon follow). Every line is checked: each agent's lines arrive exactly once, in
//! order, `1..=N`.
//!
//! `cargo bench -p drover-cli --bench fleet_follow` (release profile).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{ms, run};
use drover_client::Client;

/// Lines each agent prints once told to go.
const N: u64 = 200_000;
/// Agents followed in each run (one per host on the fleet, all on one host for the baseline).
const AGENTS: usize = 2;
const RUNS: usize = 5;

/// Each agent prints `0` (so the bench knows the follow is live), waits for a line on its
/// stdin, then prints `1..=N`.
fn script() -> String {
    format!("echo 0; read go; seq 1 {N}")
}

/// One follow of `agents` (`(host index, name)`), from before the agents start printing to
/// the end of the follow; returns the time from "go" to the last line.
fn follow(
    config: &Path,
    hosts: &[common::Host],
    names: &[String],
    agents: &[(usize, String)],
) -> Duration {
    for (host, name) in agents {
        run(
            config,
            &[
                "--context",
                &names[*host],
                "spawn",
                "-i",
                "--name",
                name,
                "--",
                "sh",
                "-c",
                &script(),
            ],
        );
    }
    let refs: Vec<String> = agents
        .iter()
        .map(|(host, name)| format!("{}/{name}", names[*host]))
        .collect();
    let mut args = vec!["logs", "-f"];
    args.extend(refs.iter().map(String::as_str));
    let mut child = common::command(config, &args)
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("drover logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let (live_tx, live_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || check(stdout, AGENTS, live_tx));
    live_rx.recv().expect("every agent's first line");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let sends = agents.iter().map(|(host, name)| async move {
            let client = Client::connect(&hosts[*host].ipc).await.expect("connect");
            client
                .write_stdin(name, b"go\n".to_vec())
                .await
                .expect("go");
        });
        futures::future::join_all(sends).await;
    });
    let ended = reader.join().expect("reader");
    let status = child.wait().expect("wait");
    assert!(status.success(), "drover logs -f: {status}");
    ended - started
}

/// Read the follow's `[HOST/NAME] LINE` lines, checking that each agent's are exactly `0..=N`
/// in order; say on `live` once every agent's `0` has arrived; return when the last line did.
fn check(stdout: impl std::io::Read, agents: usize, live: mpsc::Sender<()>) -> Instant {
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut told = false;
    for line in BufReader::with_capacity(1 << 16, stdout).lines() {
        let line = line.expect("a line of text");
        let (prefix, number) = line.split_once(' ').expect("[HOST/NAME] LINE");
        let number: u64 = number.parse().expect("a number");
        let expected = next.entry(prefix.to_owned()).or_insert(0);
        assert_eq!(
            number, *expected,
            "{prefix}: out of order, missing or twice"
        );
        *expected += 1;
        if !told && next.len() == agents {
            told = true;
            live.send(()).expect("the bench waits");
        }
    }
    assert_eq!(next.len(), agents, "every agent was followed");
    for (prefix, after) in &next {
        assert_eq!(*after, N + 1, "{prefix}: every line, 1..={N}");
    }
    Instant::now()
}

/// The median of the runs' times.
fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn rate(d: Duration) -> f64 {
    (AGENTS as u64 * N) as f64 / d.as_secs_f64()
}

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let (config, hosts, names) = common::fleet(root.path(), 2, "control");
    let mut one = Vec::new();
    let mut two = Vec::new();
    for round in 0..RUNS {
        // Alternated, so a slow moment of the machine falls on both.
        let on_one: Vec<(usize, String)> = (0..AGENTS)
            .map(|i| (0, format!("one{round}-{i}")))
            .collect();
        one.push(follow(&config, &hosts, &names, &on_one));
        let on_two: Vec<(usize, String)> = (0..AGENTS)
            .map(|i| (i % 2, format!("two{round}-{i}")))
            .collect();
        two.push(follow(&config, &hosts, &names, &on_two));
    }
    let (one, two) = (median(one), median(two));
    println!(
        "drover logs -f, CURVE over loopback TCP, {AGENTS} agents x {N} lines, every line checked, median of {RUNS}:"
    );
    println!(
        "  baseline: both agents on one daemon:     {:>8.0} ms  {:>10.0} lines/s",
        ms(one),
        rate(one)
    );
    println!(
        "  fleet: one agent on each of two daemons: {:>8.0} ms  {:>10.0} lines/s  {:.2}x baseline",
        ms(two),
        rate(two),
        rate(two) / rate(one)
    );
    drop(hosts);
}
