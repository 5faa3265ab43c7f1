//! File descriptors (issue 11 item 10): the daemon raises its soft open-files limit to the hard
//! one, refuses a `max_agents` the limit cannot carry, and a live agent under a holder holds at
//! most `FDS_PER_HELD_AGENT` descriptors. Alone in its test binary, so no other test's files disturb the
//! counts of `/proc/self/fd`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use drover_daemon::fdlimit::FDS_PER_HELD_AGENT;
use drover_daemon::Config;
use drover_proto::StdinMode;

/// `(soft, hard)` of "Max open files" in /proc/self/limits.
fn open_files_limit() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].parse().unwrap(), fields[4].parse().unwrap())
}

/// The tests of this file run one at a time: each counts or changes descriptors of the process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[tokio::test]
async fn the_open_files_limit_is_raised_and_a_max_agents_it_cannot_carry_is_refused() {
    within(async {
        let _serial = SERIAL.lock().await;
        let daemon = TestDaemon::start().await;
        let (soft, hard) = open_files_limit();
        assert_eq!(soft, hard, "the soft limit is raised to the hard limit");
        daemon.shutdown().await;

        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::ephemeral(dir.path());
        let reserve =
            drover_daemon::fdlimit::reserve(config.max_streams, config.http_limits.max_connections);
        let per_agent = config.fds_per_agent();
        let writers = u64::try_from(config.store.max_open_writers).unwrap();
        let fit = (hard - reserve - writers) / per_agent;
        assert!(
            fit >= writers,
            "this machine's limit fits more agents than open segments"
        );
        config.max_agents = usize::try_from(fit + 1).unwrap();
        let Err(error) = drover_daemon::bind(&config).await else {
            panic!("a max_agents over the limit was accepted");
        };
        let message = error.to_string();
        let needed = (fit + 1) * per_agent + writers + reserve;
        assert_eq!(
            needed,
            drover_daemon::fdlimit::needed(fit + 1, per_agent, writers, reserve)
        );
        assert!(
            message.contains(&format!(
                "max_agents {} needs {} × {per_agent} file descriptors per agent + {writers} open \
                 log segments (at most max_open_writers {writers}) + {reserve} for the daemon",
                fit + 1,
                fit + 1
            )) && message.contains(&format!("= {needed}, but the open-files limit is {hard}"))
                && message.contains(&format!("at most {fit} agents fit")),
            "{message}"
        );
        assert!(matches!(error, drover_daemon::DaemonError::Config { .. }));
        // Exactly what fits is accepted.
        config.max_agents = usize::try_from(fit).unwrap();
        drop(drover_daemon::bind(&config).await.expect("fits"));
    })
    .await
}

/// Every kind of descriptor an agent can hold at once: output (so its log segment is open) and
/// a stdin pipe. Under holders, forty of them cost the daemon at most `FDS_PER_HELD_AGENT` each
/// (its socket; the pipes are the holder's), plus the store's open log segments, which its
/// syncer keeps under `max_open_writers` (4 here), give or take a few the daemon opens for
/// itself meanwhile.
#[tokio::test]
async fn a_live_agent_holds_at_most_fds_per_agent_descriptors() {
    within(async {
        let _serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let daemon = TestDaemon::start_in(dir.path().to_path_buf(), |config| {
            config.store.max_open_writers = 4;
        })
        .await;
        let client = daemon.client().await;
        let mut spec = sh("echo ready; echo err >&2; exec sleep 100");
        spec.stdin = StdinMode::Pipe;
        let first = client.spawn(spec.clone()).await.unwrap();
        wait_ready(&client, &first).await;
        let before = open_fds();
        let mut agents = Vec::new();
        for _ in 0..40 {
            agents.push(client.spawn(spec.clone()).await.unwrap());
        }
        for agent in &agents {
            wait_ready(&client, agent).await;
        }
        // A few descriptors the daemon may open meanwhile for itself (a connection, a registry
        // journal) are not the agents'.
        const SLACK: usize = 8;
        let budget = 40 * usize::try_from(FDS_PER_HELD_AGENT).unwrap() + 4;
        // Every agent wrote, so each opened its log; the syncer closes all but 4 within its
        // next rounds.
        wait_for("the open log segments to come under the cap", || async {
            (open_fds() - before <= budget + SLACK).then_some(())
        })
        .await;
        let segments = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir.path().join("logs")))
            .count();
        assert!(segments <= 4, "{segments} log segments open");
        daemon.shutdown().await;
    })
    .await
}
