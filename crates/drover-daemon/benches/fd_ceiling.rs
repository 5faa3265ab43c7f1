//! The descriptor ceiling (issue 12, item 7): 10,000 live agents under holders on a 20,000
//! open-files limit, every one of them having written, so every log was opened.
//!
//! `cargo bench -p drover-daemon --bench fd_ceiling` (`DROVER_BENCH_AGENTS`, default 10,000;
//! `DROVER_BENCH_NOFILE`, default 20,000: this process lowers its own hard limit to it first,
//! so the figure holds on a machine with a higher one)
//!
//! The daemon runs in this process with `max_agents` = the agent count, which it accepts only
//! if the arithmetic fits the limit. Each agent is `sh -c 'echo up; exec sleep 3600'`, spawned
//! 16 requests at a time. Printed: the spawn time, this process's open descriptors once every
//! agent's line is stored, how many of them are log segments (the store keeps at most
//! `max_open_writers` open), that `list` pages through all of them and a log reads back, and
//! the shutdown time (every agent stopped).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use drover_client::Client;
use drover_daemon::{Config, ShutdownPolicy};
use drover_proto::AgentSpec;
use tokio::sync::oneshot;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn fds_under(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

fn main() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let agents = env_or("DROVER_BENCH_AGENTS", 10_000);
    let nofile = env_or("DROVER_BENCH_NOFILE", 20_000);
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < nofile {
        println!("the hard open-files limit is {hard}, under {nofile}: not measured");
        return;
    }
    // Soft and hard alike: the daemon raises the soft limit to the hard one at start.
    setrlimit(Resource::RLIMIT_NOFILE, 1024, nofile).unwrap();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(agents, nofile));
}

async fn run(agents: u64, nofile: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.ipc = true;
    config.max_agents = usize::try_from(agents).unwrap();
    config.on_shutdown = ShutdownPolicy::Stop;
    config.default_grace = Duration::from_secs(5);
    assert!(
        config.holder.is_some(),
        "no drover-holder executable found beside the bench (build the daemon's binaries)"
    );
    let listeners = drover_daemon::bind(&config)
        .await
        .unwrap_or_else(|e| panic!("max_agents {agents} refused: {e}"));
    let ipc = listeners.addresses.ipc.clone().expect("ipc endpoint");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(drover_daemon::run(config, listeners, async {
        let _ = stopped.await;
    }));
    let client = Client::connect(&ipc).await.expect("connect");
    let before = open_fds();
    let spec = AgentSpec {
        argv: ["sh", "-c", "echo up; exec sleep 3600"]
            .iter()
            .map(|w| (*w).to_owned())
            .collect(),
        ..AgentSpec::default()
    };
    let begun = Instant::now();
    let mut started = 0;
    let mut ids = Vec::new();
    while started < agents {
        let batch = (agents - started).min(16);
        let spawns = (0..batch).map(|_| client.spawn(spec.clone()));
        for result in futures::future::join_all(spawns).await {
            ids.push(result.expect("spawn").id);
        }
        started += batch;
    }
    let spawned = begun.elapsed();
    // Every agent's line stored: every log was opened.
    loop {
        let stats = client.stats().await.unwrap();
        if stats.records >= agents {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let written = begun.elapsed();
    let health = client.health().await.unwrap();
    let running = health.agents.get("running").copied().unwrap_or(0);
    // The syncer brings the open segments under the cap within a round or two.
    let cap = drover_store::StoreConfig::default().max_open_writers;
    let deadline = Instant::now() + Duration::from_secs(30);
    while fds_under(&dir.path().join("logs")) > cap {
        assert!(
            Instant::now() < deadline,
            "the log segments stayed over the cap"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fds = open_fds();
    let segments = fds_under(&dir.path().join("logs"));
    let listed = client
        .list_all(drover_proto::op::ListArgs::default())
        .await
        .unwrap()
        .len();
    let last = ids.last().unwrap().to_string();
    let read = client
        .read_logs(drover_proto::op::ReadLogsArgs::new(
            drover_proto::op::AgentRef::new(last),
        ))
        .await
        .unwrap();
    println!("{agents} agents under holders, open-files limit {nofile} (soft = hard)");
    println!(
        "  spawned in {:.1} s ({:.0}/s); every agent's line stored after {:.1} s",
        spawned.as_secs_f64(),
        agents as f64 / spawned.as_secs_f64(),
        written.as_secs_f64()
    );
    println!("  running: {running} of {agents}; list returned {listed}");
    println!(
        "  this process's open descriptors: {fds} ({before} before the agents), of which \
         {segments} log segments"
    );
    println!(
        "  the last agent's log: {:?}",
        String::from_utf8_lossy(&read.records[0].data)
    );
    assert_eq!(running, agents);
    assert_eq!(listed as u64, agents);
    assert_eq!(read.records[0].data, b"up\n");
    drop(client);
    let begun = Instant::now();
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    println!(
        "  shutdown (every agent stopped) in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
}
