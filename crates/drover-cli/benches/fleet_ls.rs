//! `drover ls` over a fleet of three daemons with 1,000 agents each, next to `drover ls` of
//! one of them, measured in the same run: the real binary, three real daemons on loopback TCP
//! with CURVE, the contexts file as a user would have it.
//!
//! `cargo bench -p drover-cli --bench fleet_ls` (release profile).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{ms, run};

use drover_client::Client;
use drover_proto::AgentSpec;

const AGENTS: usize = 1_000;
const HOSTS: usize = 3;
const RUNS: usize = 15;

/// Spawn `n` agents running `true`, 16 at a time (each ends at once, so few are live).
async fn fill(ipc: &str, n: usize) {
    let client = Client::connect(ipc).await.expect("connect");
    let mut left = n;
    while left > 0 {
        let now = left.min(16);
        let spawns = (0..now).map(|_| {
            client.spawn(AgentSpec {
                argv: vec!["true".into()],
                ..AgentSpec::default()
            })
        });
        for result in futures::future::join_all(spawns).await {
            result.expect("spawn");
        }
        left -= now;
    }
}

/// Median and minimum wall time of `drover ARGS`, and the rows it printed.
fn measure(config: &Path, args: &[&str]) -> (Duration, Duration, usize) {
    let rows = run(config, args).lines().count() - 1;
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            run(config, args);
            started.elapsed()
        })
        .collect();
    times.sort();
    (times[RUNS / 2], times[0], rows)
}

fn main() {
    let root = tempfile::tempdir().expect("tempdir");
    let (config, daemons, names) = common::fleet(root.path(), HOSTS, "read");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for daemon in &daemons {
        runtime.block_on(fill(&daemon.ipc, AGENTS));
    }
    let fleet = names.join(",");
    let (one, one_min, one_rows) = measure(&config, &["--context", &names[0], "ls"]);
    let (merged, merged_min, merged_rows) = measure(&config, &["--context", &fleet, "ls"]);
    let (sequential, _, _) = {
        let started = Instant::now();
        for _ in 0..RUNS {
            for name in &names {
                run(&config, &["--context", name, "ls"]);
            }
        }
        (started.elapsed() / RUNS as u32, (), ())
    };
    assert_eq!(one_rows, AGENTS);
    assert_eq!(merged_rows, AGENTS * HOSTS);
    println!("drover ls, CURVE over loopback TCP, {RUNS} runs each (median, min):");
    println!(
        "  one daemon, {AGENTS} agents:                 {:>7.1} ms  (min {:.1} ms)",
        ms(one),
        ms(one_min)
    );
    println!(
        "  fleet of {HOSTS} daemons, {} agents merged:   {:>7.1} ms  (min {:.1} ms)  {:.2}x one",
        AGENTS * HOSTS,
        ms(merged),
        ms(merged_min),
        ms(merged) / ms(one)
    );
    println!(
        "  the {HOSTS} daemons one after another (mean):   {:>7.1} ms",
        ms(sequential)
    );
    drop(daemons);
}
