//! Agents under holders: a stop reaches every descendant, a holder's death makes its agent
//! `lost` (and kills what is left of it), and a daemon that goes away and comes back
//! re-attaches to its agents with every record exactly once.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use drover_daemon::ShutdownPolicy;
use drover_proto::{AgentInfo, AgentState};

/// True while `pid` is a process that has not ended (a zombie has ended).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The parent of `pid`.
fn parent(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn holder_dir(daemon: &TestDaemon, agent: &AgentInfo) -> PathBuf {
    daemon.state_dir.join("holders").join(agent.id.to_string())
}

/// A script printing `1..=n`, one line every `pause` seconds (0: as fast as it can), then
/// exiting with `code`.
fn counter(n: u32, pause: &str, code: i32) -> drover_proto::AgentSpec {
    sh(&format!(
        "i=1; while [ $i -le {n} ]; do echo $i; i=$((i+1)); [ {pause} = 0 ] || sleep {pause}; done; exit {code}"
    ))
}

/// The stdout lines of an agent, as numbers, asserting every record is one whole line.
async fn numbers(client: &drover_client::Client, agent: &AgentInfo) -> Vec<u32> {
    let records = all_records(client, agent).await;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    assert_eq!(
        seqs,
        (1..=records.len() as u64).collect::<Vec<_>>(),
        "seqs have no gap"
    );
    records
        .iter()
        .map(|r| {
            assert!(!r.partial, "record {} is whole", r.seq.0);
            std::str::from_utf8(&r.data)
                .unwrap()
                .trim_end()
                .parse()
                .unwrap()
        })
        .collect()
}

async fn ended(client: &drover_client::Client, agent: &AgentInfo) -> AgentInfo {
    wait_for("the agent to end", || async {
        let info = client.get(&agent.id.to_string()).await.unwrap();
        info.state().is_terminal().then_some(info)
    })
    .await
}

#[tokio::test]
async fn stop_kills_a_descendant_that_left_the_process_group() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("escaped");
        let script = format!(
            "setsid sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 1001' >/dev/null 2>&1 </dev/null & echo ready; sleep 1000",
            p = pidfile.display()
        );
        let agent = client.spawn(sh(&script)).await.unwrap();
        wait_ready(&client, &agent).await;
        let escaped: u32 = wait_for("the escaped process's pid", || async {
            std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
        })
        .await;
        assert!(alive(escaped));
        client
            .stop(&agent.id.to_string(), Some(Duration::from_secs(1)))
            .await
            .unwrap();
        let end = ended(&client, &agent).await;
        assert_eq!(end.state(), AgentState::Killed);
        assert!(!alive(escaped), "the setsid descendant died with the agent");
        client.remove(&agent.id.to_string()).await.unwrap();
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_agent_whose_holder_is_killed_is_lost_and_its_processes_are_killed() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client
            .spawn(sh("sleep 1000 & echo ready; wait"))
            .await
            .unwrap();
        wait_ready(&client, &agent).await;
        let pid = agent.status.pid().unwrap();
        let holder = parent(pid);
        assert_ne!(
            holder,
            std::process::id(),
            "the agent's parent is its holder"
        );
        assert!(holder_dir(&daemon, &agent).join("sock").exists());
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(holder as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let end = ended(&client, &agent).await;
        assert_eq!(end.state(), AgentState::Lost);
        assert!(
            end.status.error().unwrap().contains("holder"),
            "{:?}",
            end.status
        );
        wait_for("the lost agent's processes to be killed", || async {
            (!alive(pid)).then_some(())
        })
        .await;
        daemon.shutdown().await;
    })
    .await
}

/// Start a daemon on `dir` that leaves its agents running when it shuts down.
async fn leaving(dir: &Path, tune: impl FnOnce(&mut drover_daemon::Config)) -> TestDaemon {
    TestDaemon::start_in(dir.to_path_buf(), |config| {
        config.on_shutdown = ShutdownPolicy::Leave;
        tune(config);
    })
    .await
}

#[tokio::test]
async fn a_restarted_daemon_reattaches_and_every_log_is_exact() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = leaving(dir.path(), |_| {}).await;
        let client = daemon.client().await;
        // Fast, slow, and one that ends while the daemon is away.
        let plans = [(300, "0", 0), (40, "0.02", 3), (5, "0", 7)];
        let mut agents = Vec::new();
        for (n, pause, code) in plans {
            agents.push((
                client.spawn(counter(n, pause, code)).await.unwrap(),
                n,
                code,
            ));
        }
        let quick = &agents[2].0;
        ended(&client, quick).await;
        let waits_for_input = drover_proto::AgentSpec {
            stdin: drover_proto::StdinMode::Pipe,
            ..sh("echo ready; read line; echo got $line; exit 4")
        };
        let still = client.spawn(waits_for_input).await.unwrap();
        wait_ready(&client, &still).await;
        drop(client);
        daemon.shutdown().await;

        let daemon = leaving(dir.path(), |_| {}).await;
        let client = daemon.client().await;
        let info = client.get(&still.id.to_string()).await.unwrap();
        assert_eq!(
            info.state(),
            AgentState::Running,
            "re-attached, still running"
        );
        assert_eq!(info.status.pid(), still.status.pid());
        for (agent, n, code) in &agents {
            let end = ended(&client, agent).await;
            assert_eq!(end.status.exit_code(), Some(*code));
            assert_eq!(numbers(&client, agent).await, (1..=*n).collect::<Vec<_>>());
        }
        client
            .stop(&still.id.to_string(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(ended(&client, &still).await.state(), AgentState::Killed);
        drop(client);
        daemon.shutdown().await;
        let holders = std::fs::read_dir(dir.path().join("holders"))
            .unwrap()
            .count();
        assert_eq!(holders, 0, "every holder was released and cleaned up");
    })
    .await
}

#[tokio::test]
async fn a_quiet_agents_output_is_acknowledged_and_its_spool_emptied() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        // 51 short lines, then silence: fewer records and bytes than an ack waits for, so
        // only the daemon's ack timer can tell the holder they are stored.
        let script = "i=1; while [ $i -le 50 ]; do echo line $i; i=$((i+1)); done; \
                      echo ready; exec sleep 3600";
        let agent = client.spawn(sh(script)).await.unwrap();
        wait_for("the 51 lines to be stored", || async {
            (all_records(&client, &agent).await.len() == 51).then_some(())
        })
        .await;
        let spool = holder_dir(&daemon, &agent).join("spool");
        wait_for("the holder to empty its spool", || async {
            (std::fs::metadata(&spool).ok()?.len() == 0).then_some(())
        })
        .await;
        assert_eq!(
            client.get(&agent.id.to_string()).await.unwrap().state(),
            AgentState::Running
        );
        client.kill(&agent.id.to_string()).await.unwrap();
        assert_eq!(ended(&client, &agent).await.state(), AgentState::Killed);
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_full_spool_blocks_the_agent_and_loses_nothing() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let limit = 64 * 1024;
        let daemon = leaving(dir.path(), |config| config.spool_limit = limit).await;
        let client = daemon.client().await;
        // 3,000 lines of about 100 bytes: far more than the spool may keep.
        let n = 3000;
        let script = format!(
            "echo ready >&2; read go; i=1; while [ $i -le {n} ]; do printf '%s %0100d\\n' $i 0; i=$((i+1)); done"
        );
        let spec = drover_proto::AgentSpec {
            stdin: drover_proto::StdinMode::Pipe,
            ..sh(&script)
        };
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;
        drop(client);
        let spool = daemon.state_dir.join("holders").join(agent.id.to_string()).join("spool");
        daemon.shutdown().await;
        // Nobody stores: the daemon is away. Start the writing now.
        let pid = agent.status.pid().unwrap();
        let fifo = format!("/proc/{pid}/fd/0");
        std::fs::write(&fifo, b"go\n").unwrap();
        let full = wait_for("the spool to fill", || async {
            let len = std::fs::metadata(&spool).ok()?.len();
            (len >= limit).then_some(len)
        })
        .await;
        assert!(full < limit + 128 * 1024, "the spool stays near its limit ({full} bytes)");
        assert!(alive(pid), "the agent is blocked on its output, not finished");

        let daemon = leaving(dir.path(), |config| config.spool_limit = limit).await;
        let client = daemon.client().await;
        let end = ended(&client, &agent).await;
        assert_eq!(end.status.exit_code(), Some(0), "{:?}", end.status);
        let records = all_records(&client, &agent).await;
        let lines: Vec<u32> = records
            .iter()
            .filter(|r| r.stream == drover_proto::StreamKind::Stdout)
            .map(|r| {
                let text = std::str::from_utf8(&r.data).unwrap();
                text.split_whitespace().next().unwrap().parse().unwrap()
            })
            .collect();
        assert_eq!(lines, (1..=n).collect::<Vec<_>>());
        let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_holder_speaking_an_incompatible_protocol_is_reported_and_its_agent_left_running() {
    use drover_holder::wire::{self, FromHolder, ToHolder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    within(async {
        let dir = tempfile::tempdir().unwrap();
        let daemon = leaving(dir.path(), |_| {}).await;
        let client = daemon.client().await;
        let agent = client
            .spawn(sh("echo ready; exec sleep 1000"))
            .await
            .unwrap();
        wait_ready(&client, &agent).await;
        let pid = agent.status.pid().unwrap();
        let holder = parent(pid);
        drop(client);
        let holder_dir = holder_dir(&daemon, &agent);
        daemon.shutdown().await;

        // A holder of another build: it answers every hello with `refused`.
        let socket = holder_dir.join("sock");
        std::fs::rename(&socket, holder_dir.join("sock.real")).unwrap();
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let other = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let hello = loop {
                let mut chunk = [0u8; 1024];
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(hello) = wire::decode::<ToHolder>(&mut buf).unwrap() {
                    break hello;
                }
            };
            assert!(
                matches!(hello, ToHolder::Hello { version, .. } if version == wire::PROTOCOL_VERSION),
                "{hello:?}"
            );
            let mut out = Vec::new();
            let newer = wire::PROTOCOL_VERSION + 1;
            let refused = FromHolder::Refused {
                version: newer,
                message: format!("this holder speaks protocol {newer}..={newer}"),
            };
            wire::encode(&refused, &mut out).unwrap();
            stream.write_all(&out).await.unwrap();
        });

        let daemon = leaving(dir.path(), |_| {}).await;
        let client = daemon.client().await;
        other.await.unwrap();
        let info = client.get(&agent.id.to_string()).await.unwrap();
        assert_eq!(info.state(), AgentState::Lost);
        let error = info.status.error().unwrap();
        assert!(
            error.contains(&format!("holder protocol {}", wire::PROTOCOL_VERSION + 1)),
            "{error}"
        );
        assert!(error.contains("left running"), "{error}");
        assert!(alive(pid), "the agent was left running");
        assert!(alive(holder), "its holder too");
        drop(client);
        daemon.shutdown().await;
        for p in [pid, holder] {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    })
    .await
}

#[tokio::test]
async fn stop_sends_the_specs_stop_signal_first_and_a_bad_one_is_refused() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let spec = drover_proto::AgentSpec {
            stop_signal: Some("INT".into()),
            ..sh("trap 'echo got INT; exit 0' INT; echo ready; while :; do sleep 0.05; done")
        };
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;
        client
            .stop(&agent.id.to_string(), Some(Duration::from_secs(20)))
            .await
            .unwrap();
        let end = ended(&client, &agent).await;
        assert_eq!(end.status.exit_code(), Some(0), "{:?}", end.status);
        assert_eq!(
            text(&all_records(&client, &agent).await),
            "ready\ngot INT\n"
        );

        let bad = drover_proto::AgentSpec {
            stop_signal: Some("NOPE".into()),
            ..sh("true")
        };
        assert_eq!(
            code(client.spawn(bad).await),
            drover_proto::ErrorCode::BadRequest
        );
        daemon.shutdown().await;
    })
    .await
}

/// Pids of the live holders whose directory passes `matches`. A holder is known by its stderr,
/// `holder.log` in its directory, set from its first instant (holders forked by the spawner
/// keep its command line; the path follows renames).
fn holders_where(matches: impl Fn(&Path) -> bool) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let log = std::fs::read_link(format!("/proc/{pid}/fd/2")).ok();
        let dir = log
            .as_deref()
            .filter(|log| {
                log.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(drover_holder::LOG))
            })
            .and_then(Path::parent);
        if dir.is_some_and(&matches) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Pids of the holders waiting in the spawner's pool.
fn pooled_holders(pool: &Path) -> Vec<u32> {
    holders_where(|dir| dir.starts_with(pool))
}

/// Pids of the live holders under `state`, wherever they are.
fn holders_of(state: &Path) -> Vec<u32> {
    holders_where(|dir| dir.starts_with(state))
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The directory of a live holder, from its open spool (the path follows renames; a spool
/// removed with its directory reads `spool (deleted)`).
fn spool_dir(pid: u32) -> Option<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .find(|target| {
            target
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("spool"))
        })
        .and_then(|spool| spool.parent().map(Path::to_path_buf))
}

/// A daemon is connected to the holder `pid`: it has a socket besides its listening one.
fn connected(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|target| target.to_string_lossy().starts_with("socket:"))
            .count()
            >= 2
    })
}

#[tokio::test]
async fn a_spawn_takes_a_holder_kept_ready_and_every_one_ahead_ends_with_the_daemon() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let state = daemon.state_dir.clone();
        let (ready, pool) = (state.join("holders.ready"), state.join("holders.pool"));
        let kept_ready = || async { settled(&state).map(|(kept, _)| kept) };
        let before = wait_for("holders kept ready and pooled", kept_ready).await;
        assert_eq!(before.len(), drover_supervisor::READY);
        assert_eq!(entries(&ready), drover_supervisor::READY);
        // A spawn takes one of them, moved into the agent's directory. (One that was still
        // being greeted is not offered yet: the spawn then takes the next.)
        let mut spawned = Vec::new();
        let (agent, holder) = loop {
            assert!(
                spawned.len() <= drover_supervisor::READY,
                "no spawn took a ready holder"
            );
            let agent = client.spawn(sh("echo ready; sleep 1000")).await.unwrap();
            let holder = parent(agent.status.pid().unwrap());
            spawned.push(agent.clone());
            if before.contains(&holder) {
                break (agent, holder);
            }
        };
        assert_eq!(spool_dir(holder), Some(holder_dir(&daemon, &agent)));
        assert!(holder_dir(&daemon, &agent).join("sock").exists());
        wait_ready(&client, &agent).await;
        // Both fill again. Ready holders killed meanwhile are passed over, their directories
        // removed: the next spawn runs all the same.
        let kept = wait_for("both to fill again", kept_ready).await;
        let dirs: Vec<PathBuf> = kept.iter().filter_map(|p| spool_dir(*p)).collect();
        assert_eq!(dirs.len(), kept.len());
        for pid in &kept {
            let pid = nix::unistd::Pid::from_raw(*pid as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        }
        wait_for("the killed holders to end", || async {
            kept.iter().all(|p| !alive(*p)).then_some(())
        })
        .await;
        let next = client.spawn(sh("echo next")).await.unwrap();
        assert!(!kept.contains(&parent_or_zero(next.status.pid())));
        assert_eq!(ended(&client, &next).await.status.exit_code(), Some(0));
        assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?} removed");
        wait_for("both to fill after the killed ones", kept_ready).await;
        for agent in &spawned {
            client.kill(&agent.id.to_string()).await.unwrap();
            ended(&client, agent).await;
        }
        // With the daemon (and its spawner) gone, every holder started ahead goes too, taking
        // its directory with it.
        daemon.shutdown().await;
        wait_for("the holders started ahead to exit", || async {
            let gone = holders_of(&state).is_empty() && entries(&ready) == 0 && entries(&pool) == 0;
            gone.then_some(())
        })
        .await;
    })
    .await
}

/// Once the daemon keeps its holders ready (connected to it; recycled ones of ended agents
/// count too) and the spawner's pool is full behind them: the pids of both.
fn settled(state: &Path) -> Option<(Vec<u32>, Vec<u32>)> {
    let ready = state.join("holders.ready");
    let pooled = pooled_holders(&state.join("holders.pool"));
    let kept: Vec<u32> = holders_of(state)
        .into_iter()
        .filter(|p| !pooled.contains(p) && spool_dir(*p).is_some_and(|d| d.starts_with(&ready)))
        .collect();
    let full = kept.len() >= drover_supervisor::READY
        && kept.iter().all(|p| connected(*p))
        && pooled.len() == drover_holder::pool::POOL_SIZE;
    full.then_some((kept, pooled))
}

/// The parent of `pid` while it runs, else 0.
fn parent_or_zero(pid: Option<u32>) -> u32 {
    pid.and_then(|pid| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        rest.split_whitespace().nth(1)?.parse().ok()
    })
    .unwrap_or(0)
}

/// The text of an agent's records, in order.
async fn output(client: &drover_client::Client, agent: &AgentInfo) -> String {
    let records = all_records(client, agent).await;
    let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect()
}

#[tokio::test]
async fn the_holder_of_an_ended_agent_is_recycled_for_the_next_and_the_next_sees_nothing_of_it() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let state = daemon.state_dir.clone();
        let flags = tempfile::tempdir().unwrap();
        let go = flags.path().join("go");
        let first = client
            .spawn(sh(&format!(
                "echo one; echo err >&2; while [ ! -e {} ]; do sleep 0.01; done; exit 3",
                go.display()
            )))
            .await
            .unwrap();
        let holder = parent(first.status.pid().unwrap());
        std::fs::write(&go, b"").unwrap();
        let end = ended(&client, &first).await;
        assert_eq!(end.status.exit_code(), Some(3));
        // Its directory moves away to be kept ready (a released holder removes it).
        wait_for("the first holder's directory to go", || async {
            (!holder_dir(&daemon, &first).exists()).then_some(())
        })
        .await;
        // Every agent after it runs as a fresh holder would run it: its own seqs from 1, its
        // own output, its own status. Spawned until the recycled holder takes one (the two
        // started ahead go first).
        let mut taken = None;
        for n in 0..=drover_supervisor::READY_MAX {
            let agent = client
                .spawn(sh(&format!("echo ready{n}; sleep 1000")))
                .await
                .unwrap();
            wait_ready(&client, &agent).await;
            assert_eq!(output(&client, &agent).await, format!("ready{n}\n"));
            if parent(agent.status.pid().unwrap()) == holder {
                taken = Some(agent);
                break;
            }
        }
        let again = taken.expect("the recycled holder took a later agent");
        assert!(holder_dir(&daemon, &again).join("sock").exists());
        client
            .stop(&again.id.to_string(), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(ended(&client, &again).await.state(), AgentState::Killed);
        assert_eq!(output(&client, &first).await, "one\nerr\n");
        daemon.shutdown().await;
        wait_for("every holder to exit with the daemon", || async {
            holders_of(&state).is_empty().then_some(())
        })
        .await;
    })
    .await
}

#[tokio::test]
async fn holders_kept_ready_stay_bounded_however_many_agents_end() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let state = daemon.state_dir.clone();
        let spawns = (0..24).map(|i| client.spawn(sh(&format!("echo {i}"))));
        let agents: Vec<AgentInfo> = futures::future::join_all(spawns)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        for agent in &agents {
            assert_eq!(ended(&client, agent).await.status.exit_code(), Some(0));
        }
        // Every holder of an ended agent was recycled or exited: what stays is the ready ones
        // (at most READY_MAX) and the spawner's pool.
        let ready = state.join("holders.ready");
        let settled = wait_for("the holders to settle", || async {
            let pooled = pooled_holders(&state.join("holders.pool")).len();
            let kept = entries(&ready);
            let live = holders_of(&state).len();
            (entries(&state.join("holders")) == 0 && live == kept + pooled).then_some(kept)
        })
        .await;
        assert!(
            (drover_supervisor::READY..=drover_supervisor::READY_MAX).contains(&settled),
            "{settled} holders kept ready"
        );
        daemon.shutdown().await;
    })
    .await
}

/// The descriptors `pid` holds: number and what it points at.
fn descriptors(pid: u32) -> Vec<(u32, String)> {
    let mut fds: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| {
            let number = fd.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(fd.path()).ok()?;
            Some((number, target.to_string_lossy().into_owned()))
        })
        .collect();
    fds.sort();
    fds
}

#[tokio::test]
async fn holders_are_forked_from_the_spawner_and_hold_none_of_its_descriptors() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let state = daemon.state_dir.clone();
        let agent = client.spawn(sh("echo ready; sleep 1000")).await.unwrap();
        wait_ready(&client, &agent).await;
        let held = parent(agent.status.pid().unwrap());
        let spawner = parent(held);
        let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        assert!(
            cmdline(spawner).ends_with(b"spawner\0"),
            "{spawner} is the spawner"
        );
        // Its pipes to the daemon, which no holder may keep open.
        let links = descriptors(spawner);
        let daemon_pipes: Vec<&String> = links
            .iter()
            .filter(|(fd, _)| *fd <= 1)
            .map(|(_, target)| target)
            .collect();
        assert!(
            daemon_pipes.iter().all(|t| t.starts_with("pipe:")),
            "{links:?}"
        );
        // Settled: the holders kept ready all connected, the pool full behind them.
        let pool = state.join("holders.pool");
        let (kept, pooled) = wait_for("the holders to settle", || async { settled(&state) }).await;
        for pid in pooled.iter().chain(&kept).copied().chain([held]) {
            // Forked, not executed: the spawner's command line, a name of its own.
            assert_eq!(cmdline(pid), cmdline(spawner), "holder {pid}");
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
            assert_eq!(comm, "drover-holder\n");
            assert_eq!(parent(pid), spawner);
            let fds = descriptors(pid);
            assert!(
                fds.iter()
                    .all(|(_, target)| !daemon_pipes.contains(&target)),
                "holder {pid} keeps the spawner's pipes: {fds:?}"
            );
            assert!(fds[2].1.ends_with("/holder.log"), "{fds:?}");
            // Still in the pool after its descriptors were read (nothing claims one once
            // settled, but a claim would close its link and move it).
            if pooled.contains(&pid) && spool_dir(pid).is_some_and(|d| d.starts_with(&pool)) {
                // Its one pipe is its own link (moved off stdout, which is /dev/null); the
                // other holders' links are the spawner's alone.
                let pipes = fds.iter().filter(|(_, t)| t.starts_with("pipe:")).count();
                assert_eq!(pipes, 1, "holder {pid}: {fds:?}");
                assert_eq!(fds[1].1, "/dev/null");
            }
        }
        client.kill(&agent.id.to_string()).await.unwrap();
        ended(&client, &agent).await;
        daemon.shutdown().await;
    })
    .await
}

/// A spawn whose holder does not report its agent's start in time is `failed_to_start`, and
/// then no agent of it may run: the holder it sent the start to is killed, before it could
/// start the agent (here: it was stopped), and so is whatever of the agent ran. Before, the
/// holder started the agent once it ran again, and nothing managed it ever after.
#[tokio::test]
async fn a_spawn_that_gives_up_on_its_holder_leaves_no_agent_running() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let state = daemon.state_dir.clone();
        let (kept, _) = wait_for("holders kept ready and pooled", || async {
            settled(&state)
        })
        .await;
        let signal = |pids: &[u32], signal| {
            for pid in pids {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), signal);
            }
        };
        // Every holder kept ready is stopped: the spawn takes one, and it cannot answer.
        signal(&kept, nix::sys::signal::Signal::SIGSTOP);
        let marks = tempfile::tempdir().unwrap();
        let mark = marks.path().join("ran");
        let script = format!("echo $$ > {}; exec sleep 600", mark.display());
        let agent = client.spawn(sh(&script)).await.unwrap();
        assert_eq!(agent.state(), AgentState::FailedToStart, "{agent:?}");
        let taken = holder_dir(&daemon, &agent);
        signal(&kept, nix::sys::signal::Signal::SIGCONT);
        wait_for("the holder given the start to be gone", || async {
            holders_where(|dir| dir == taken).is_empty().then_some(())
        })
        .await;
        // The others run on, kept ready for the next spawn.
        let next = client.spawn(sh("echo next")).await.unwrap();
        assert_eq!(ended(&client, &next).await.status.exit_code(), Some(0));
        assert!(!mark.exists(), "the abandoned agent never ran");
        assert!(!taken.exists(), "its holder's directory is removed");
        let id = agent.id.to_string();
        let strays = drover_holder::tree::find_by_agent(&std::collections::HashSet::from([id]));
        assert!(strays.is_empty(), "no process of the agent: {strays:?}");
        daemon.shutdown().await;
    })
    .await
}

/// A state the holder entered while no daemon ran is what the next daemon reports: here the
/// agent's timeout fired meanwhile and the holder is stopping it (its grace running). Before,
/// the registry kept saying `running` until the agent ended.
#[tokio::test]
async fn a_state_changed_while_the_daemon_was_away_is_recorded_on_reattach() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let grace = |config: &mut drover_daemon::Config| {
            config.default_grace = Duration::from_secs(60);
        };
        let daemon = leaving(dir.path(), grace).await;
        let client = daemon.client().await;
        let marks = tempfile::tempdir().unwrap();
        let mark = marks.path().join("term");
        let mut spec = sh(&format!(
            "trap 'echo term > {}' TERM; echo ready; while :; do sleep 0.1; done",
            mark.display()
        ));
        spec.timeout_ms = Some(1500);
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;
        drop(client);
        daemon.shutdown().await;
        // The holder's timeout sends SIGTERM while no daemon runs; the agent notes it and
        // runs on through the grace.
        wait_for("the timeout's SIGTERM", || async {
            mark.exists().then_some(())
        })
        .await;

        let daemon = leaving(dir.path(), grace).await;
        let client = daemon.client().await;
        let found = client.get(&agent.id.to_string()).await.unwrap();
        assert_eq!(found.state(), AgentState::Stopping, "{found:?}");
        let events = client
            .read_events(Some(drover_proto::EventSeq(0)), Some(1000))
            .await
            .unwrap()
            .events;
        let states: Vec<AgentState> = events
            .iter()
            .filter(|e| e.agent == agent.id && e.kind == drover_proto::EventKind::State)
            .map(|e| e.state)
            .collect();
        assert_eq!(states.last(), Some(&AgentState::Stopping), "{states:?}");
        client.kill(&agent.id.to_string()).await.unwrap();
        assert_eq!(ended(&client, &agent).await.state(), AgentState::Killed);
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn an_unbounded_wait_goes_on_through_a_restart_and_ends_when_the_daemon_is_gone() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let ipc = |daemon: &TestDaemon| daemon.addresses.ipc.clone().expect("ipc");
        let options = drover_client::ClientOptions {
            // Short rounds, so that an unanswered one shows within seconds.
            request_timeout: Duration::from_secs(1),
            ..drover_client::ClientOptions::default()
        };
        let daemon = leaving(dir.path(), |config| config.ipc = true).await;
        let endpoint = ipc(&daemon);
        let waiter = std::sync::Arc::new(
            drover_client::Client::connect_with(&endpoint, options.clone())
                .await
                .unwrap(),
        );
        let client = daemon.client().await;
        let waits =
            |stats: drover_proto::op::StatsResult| stats.requests.get("wait").copied().unwrap_or(0);
        let first = client.spawn(sh("exec sleep 1000")).await.unwrap();
        let first_id = first.id.to_string();
        let waiting = tokio::spawn({
            let waiter = std::sync::Arc::clone(&waiter);
            let id = first_id.clone();
            async move { waiter.wait(&id, None).await }
        });
        // Once it waits, a restart on the same socket: the wait goes on, and sees the end.
        wait_for("the waiter's first round", || async {
            (waits(client.stats().await.unwrap()) > 0).then_some(())
        })
        .await;
        drop(client);
        daemon.shutdown().await;
        let daemon = leaving(dir.path(), |config| config.ipc = true).await;
        let client = daemon.client().await;
        client.kill(&first_id).await.unwrap();
        let ended = waiting.await.unwrap().unwrap();
        assert_eq!(ended.state(), AgentState::Killed);

        // Gone for good: the wait ends with an error instead of asking forever.
        let second = client.spawn(sh("exec sleep 1000")).await.unwrap();
        let second_id = second.id.to_string();
        let waits =
            |stats: drover_proto::op::StatsResult| stats.requests.get("wait").copied().unwrap_or(0);
        let before = waits(client.stats().await.unwrap());
        let waiting = tokio::spawn({
            let waiter = std::sync::Arc::clone(&waiter);
            let id = second_id.clone();
            async move { waiter.wait(&id, None).await }
        });
        // The wait has its agent's id before the daemon goes (it looks it up first).
        wait_for("the waiter's first round", || async {
            (waits(client.stats().await.unwrap()) > before).then_some(())
        })
        .await;
        drop(client);
        daemon.shutdown().await;
        let error = waiting.await.unwrap().unwrap_err();
        assert!(error.is_unanswered(), "{error}");
        assert!(error.to_string().contains("answered for 10 s"), "{error}");
        common::leftovers::kill_holders(dir.path());
    })
    .await
}
