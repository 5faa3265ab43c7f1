//! `drover ls` over a fleet of three daemons with 1,000 agents each, next to `drover ls` of
//! one of them, measured in the same run: the real binary, three real daemons on loopback TCP
//! with CURVE, the contexts file as a user would have it.
//!
//! `cargo bench -p drover-cli --bench fleet_ls` (release profile).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drover_client::Client;
use drover_proto::AgentSpec;

const AGENTS: usize = 1_000;
const HOSTS: usize = 3;
const RUNS: usize = 15;

fn drover() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

fn run(config: &Path, args: &[&str]) -> String {
    let output = Command::new(drover())
        .args(args)
        .env("DROVER_CONFIG_DIR", config)
        .env_remove("DROVER_CONTEXT")
        .env_remove("DROVER_CONTROL")
        .output()
        .expect("run drover");
    assert!(
        output.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A daemon on loopback: its process, TCP control endpoint and ipc endpoint.
fn serve(state: &Path) -> (Child, String, String) {
    let mut child = Command::new(drover())
        .args([
            "serve",
            "--control",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ])
        .args(["--http", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .env("DROVER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("drover serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .expect("field")
            .to_owned()
    };
    (child, field("control="), field("ipc="))
}

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
    let config: PathBuf = root.path().join("config");
    let key = config.join("client.key");
    std::fs::create_dir_all(&config).unwrap();
    let public = run(&config, &["auth", "keygen", "--out", key.to_str().unwrap()]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut daemons = Vec::new();
    let mut names = Vec::new();
    for host in 0..HOSTS {
        let state = root.path().join(format!("state{host}"));
        std::fs::create_dir_all(&state).unwrap();
        let state_arg = state.to_str().unwrap();
        run(
            &config,
            &[
                "auth",
                "allow",
                public.trim(),
                "--role",
                "read",
                "--state-dir",
                state_arg,
            ],
        );
        let server_key = run(&config, &["auth", "server-key", "--state-dir", state_arg]);
        let (child, tcp, ipc) = serve(&state);
        let name = format!("d{host}");
        run(
            &config,
            &[
                "context",
                "add",
                &name,
                "--control",
                &tcp,
                "--server-key",
                server_key.trim(),
                "--key",
                key.to_str().unwrap(),
            ],
        );
        runtime.block_on(fill(&ipc, AGENTS));
        daemons.push(child);
        names.push(name);
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
    for mut child in daemons {
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
