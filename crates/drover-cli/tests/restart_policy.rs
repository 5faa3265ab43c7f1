//! Restart policies (issue 12): an agent that ends by itself is started again under the same
//! id, its log going on from the next `seq`; each run is numbered; a stop during the wait
//! cancels the restart; a timeout is reported as one and never restarts the agent. Driven
//! through the real binary against a real daemon.

mod common;

use common::*;

/// The agent's log as (seq, line) pairs.
fn log(daemon: &Daemon, agent: &str) -> Vec<(u64, String)> {
    ok(daemon.drover(&["--json", "logs", agent]))
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
            (
                record["seq"].as_u64().expect("seq"),
                record["text"].as_str().expect("text").trim_end().to_owned(),
            )
        })
        .collect()
}

/// The agent's events as (kind, state, run).
fn events(daemon: &Daemon, id: &str) -> Vec<(String, String, u64)> {
    ok(daemon.drover(&["--json", "events"]))
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON event"))
        .filter(|event| event["agent"] == id)
        .map(|event| {
            (
                event["kind"].as_str().expect("kind").to_owned(),
                event["state"].as_str().expect("state").to_owned(),
                event["run"].as_u64().unwrap_or(1),
            )
        })
        .collect()
}

/// `wait` for the agent's end (its exit status is the agent's), as JSON.
fn wait_end(daemon: &Daemon, agent: &str) -> serde_json::Value {
    let output = daemon.drover(&["--json", "wait", agent]);
    serde_json::from_str(&stdout(&output)).expect("the ended agent as JSON")
}

fn state(daemon: &Daemon, agent: &str) -> serde_json::Value {
    json(daemon, &["show", agent])
}

/// Wait until the agent's log has `line`.
fn wait_line(daemon: &Daemon, agent: &str, line: &str) {
    wait_for(line, || {
        log(daemon, agent)
            .iter()
            .any(|(_, logged)| logged == line)
            .then_some(())
    });
}

#[test]
fn on_failure_restarts_with_growing_waits_up_to_max_restarts_and_seqs_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Each run prints when it started (ns) and fails.
    let id = ok(daemon.drover(&[
        "spawn",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "--restart-delay",
        "100ms",
        "--restart-max-delay",
        "1s",
        "--",
        "sh",
        "-c",
        "date +%s%N; exit 1",
    ]))
    .trim()
    .to_owned();
    let ended = wait_end(&daemon, "flaky");
    assert_eq!(ended["state"], "exited");
    assert_eq!(ended["exit_code"], 1);
    assert_eq!(ended["restarts"], 3);

    // Four runs, one log: seqs 1..=4 without a gap.
    let log = log(&daemon, "flaky");
    assert_eq!(
        log.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    // Run k+1 starts no sooner than run k ended plus its wait: 100, 200, then 400 ms.
    let starts: Vec<i64> = log.iter().map(|(_, line)| line.parse().unwrap()).collect();
    for (k, least_ms) in [100i64, 200, 400].into_iter().enumerate() {
        let gap_ms = (starts[k + 1] - starts[k]) / 1_000_000;
        assert!(
            gap_ms >= least_ms,
            "run {} started {gap_ms} ms after run {}, before its {least_ms} ms wait",
            k + 2,
            k + 1
        );
    }

    // Each run is visible: a `restarting` state, the next run's `starting` (recorded before its
    // holder starts), then `restarted` with the run's number.
    let seen: Vec<(String, String, u64)> = events(&daemon, &id)
        .into_iter()
        .filter(|(kind, _, _)| kind != "activity")
        .collect();
    let expected: Vec<(String, String, u64)> = [
        ("spawned", "starting", 1),
        ("state", "running", 1),
        ("state", "restarting", 1),
        ("state", "starting", 2),
        ("restarted", "running", 2),
        ("state", "restarting", 2),
        ("state", "starting", 3),
        ("restarted", "running", 3),
        ("state", "restarting", 3),
        ("state", "starting", 4),
        ("restarted", "running", 4),
        ("exit", "exited", 4),
    ]
    .into_iter()
    .map(|(kind, state, run)| (kind.to_owned(), state.to_owned(), run))
    .collect();
    assert_eq!(seen, expected);

    // `ls --wide` counts the restarts; `show` names the policy and the run.
    let listing = ok(daemon.drover(&["ls", "--wide"]));
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    let column = header
        .iter()
        .position(|h| *h == "RESTARTS")
        .expect("a RESTARTS column");
    let row: Vec<&str> = lines
        .find(|l| l.contains("flaky"))
        .unwrap()
        .split_whitespace()
        .collect();
    // STATUS ("code 1") and CREATED ("0s ago") are two words each.
    assert_eq!(row[column + 2], "3", "{listing}");
    let shown = ok(daemon.drover(&["show", "flaky"]));
    assert!(
        shown.contains("restarts 3 (at most 3), policy on_failure; this is run 4"),
        "{shown}"
    );
}

#[test]
fn always_restarts_after_exit_zero_and_a_stop_during_the_wait_cancels_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "twice",
        "--restart",
        "always:1",
        "--restart-delay",
        "10ms",
        "--",
        "echo",
        "hi",
    ]));
    let ended = wait_end(&daemon, "twice");
    assert_eq!(
        (ended["state"].as_str(), ended["restarts"].as_u64()),
        (Some("exited"), Some(1))
    );
    assert_eq!(
        log(&daemon, "twice"),
        vec![(1, "hi".to_owned()), (2, "hi".to_owned())]
    );

    // A restart a minute away: the agent waits in `restarting`.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "waits",
        "--restart",
        "always",
        "--restart-delay",
        "60s",
        "--",
        "echo",
        "once",
    ]));
    let waiting = wait_for("the agent to wait for its restart", || {
        let info = state(&daemon, "waits");
        (info["state"] == "restarting").then_some(info)
    });
    assert_eq!(waiting["exit_code"], 0);
    let restart_at = waiting["restart_at"].as_i64().expect("restart_at");
    let ended_at = waiting["ended_at"].as_i64().expect("ended_at");
    assert!(restart_at - ended_at >= 60_000_000_000, "{waiting}");
    // Only a stop or a kill acts on a restarting agent; the rest are refused, saying why.
    let paused = daemon.drover(&["pause", "waits"]);
    assert!(!paused.status.success());
    assert!(
        stderr(&paused).contains("it is restarting (stop or kill it to cancel the restart)"),
        "{}",
        stderr(&paused)
    );
    let stopped = json(&daemon, &["stop", "waits"]);
    assert_eq!(stopped["state"], "exited", "{stopped}");
    assert_eq!(stopped["exit_code"], 0);
    assert_eq!(stopped["restarts"].as_u64().unwrap_or(0), 0);
    // Ended for good: `wait` answers at once, the log holds the one run.
    assert_eq!(wait_end(&daemon, "waits")["state"], "exited");
    assert_eq!(log(&daemon, "waits"), vec![(1, "once".to_owned())]);

    // A kill during the wait cancels it the same way; the agent ends as its run did.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "killed",
        "--restart",
        "on-failure",
        "--restart-delay",
        "60s",
        "--",
        "sh",
        "-c",
        "exit 4",
    ]));
    wait_for("the second agent to wait for its restart", || {
        (state(&daemon, "killed")["state"] == "restarting").then_some(())
    });
    let killed = json(&daemon, &["kill", "killed"]);
    assert_eq!(
        (killed["state"].as_str(), killed["exit_code"].as_i64()),
        (Some("exited"), Some(4))
    );

    // A follower started with the agent's first run sees every run's lines once, in order, and
    // ends with its last run.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "thrice",
        "--restart",
        "always:2",
        "--restart-delay",
        "10ms",
        "--",
        "sh",
        "-c",
        "seq 1 100; sleep 0.2",
    ]));
    let followed = ok(daemon.drover(&["logs", "-f", "thrice"]));
    let once: String = (1..=100).map(|i| format!("{i}\n")).collect();
    assert_eq!(followed, once.repeat(3));
    let seqs: Vec<u64> = log(&daemon, "thrice").iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>());

    // A daemon that stops its agents on shutdown ends a waiting one as its last run did.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "shutdown",
        "--restart",
        "always",
        "--restart-delay",
        "60s",
        "--",
        "echo",
        "last",
    ]));
    wait_for("the third agent to wait for its restart", || {
        (state(&daemon, "shutdown")["state"] == "restarting").then_some(())
    });
    daemon.stop();
    let daemon = Daemon::start(dir.path());
    let ended = state(&daemon, "shutdown");
    assert_eq!(
        (ended["state"].as_str(), ended["exit_code"].as_i64()),
        (Some("exited"), Some(0))
    );
}

#[test]
fn a_timeout_is_reported_as_a_timeout_and_never_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "slow",
        "--timeout",
        "300ms",
        "--restart",
        "always",
        "--",
        "sleep",
        "30",
    ]));
    let ended = wait_end(&daemon, "slow");
    assert_eq!(ended["state"], "killed", "{ended}");
    assert_eq!(ended["signal"], 15);
    assert_eq!(ended["timed_out"], true);
    assert_eq!(ended["restarts"].as_u64().unwrap_or(0), 0);
    let listing = ok(daemon.drover(&["ls"]));
    assert!(listing.contains("timed out (TERM)"), "{listing}");

    // A stop is not a timeout, however long the agent ran.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "stopped",
        "--timeout",
        "1h",
        "--",
        "sleep",
        "30",
    ]));
    let stopped = json(&daemon, &["stop", "stopped", "--grace", "1s"]);
    let stopped = if stopped["state"] == "killed" {
        stopped
    } else {
        wait_end(&daemon, "stopped")
    };
    assert_eq!(stopped["state"], "killed");
    assert!(stopped.get("timed_out").is_none(), "{stopped}");
}

#[test]
fn a_signal_asks_for_the_end_only_if_the_run_dies_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let go = dir.path().join("go");
    // Run 1 traps USR1 and lives on; once `go` exists it fails, and so does run 2 at once.
    let script = format!(
        "trap 'echo got USR1' USR1; echo ready; while [ ! -e {} ]; do sleep 0.05; done; exit 3",
        go.display()
    );
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "survivor",
        "--restart",
        "on-failure:1",
        "--",
        "sh",
        "-c",
        &script,
    ]));
    wait_line(&daemon, "survivor", "ready");
    ok(daemon.drover(&["signal", "USR1", "survivor"]));
    wait_line(&daemon, "survivor", "got USR1");
    std::fs::write(&go, b"").unwrap();
    // The failure after the signal it survived is a failure: the policy restarts it once.
    let ended = wait_end(&daemon, "survivor");
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 3);
    assert_eq!(ended["restarts"], 1, "{ended}");

    // A run that dies of the signal, or exits 128 + its number after trapping it, ended as
    // asked: no restart.
    for (name, script) in [
        ("dies", "echo ready; while :; do sleep 0.05; done"),
        (
            "exits",
            "trap 'exit 138' USR1; echo ready; while :; do sleep 0.05; done",
        ),
    ] {
        ok(daemon.drover(&[
            "spawn",
            "--name",
            name,
            "--restart",
            "always",
            "--",
            "sh",
            "-c",
            script,
        ]));
        wait_line(&daemon, name, "ready");
        ok(daemon.drover(&["signal", "USR1", name]));
        let ended = wait_end(&daemon, name);
        match name {
            "dies" => {
                assert_eq!(ended["state"], "killed", "{ended}");
                assert_eq!(ended["signal"], 10);
            }
            _ => {
                assert_eq!(ended["state"], "exited", "{ended}");
                assert_eq!(ended["exit_code"], 138);
            }
        }
        assert_eq!(ended["restarts"].as_u64().unwrap_or(0), 0, "{ended}");
    }
}

#[test]
fn a_timeout_while_no_daemon_runs_is_reported_as_one_and_never_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "slow",
        "--timeout",
        "700ms",
        "--restart",
        "always",
        "--",
        "sleep",
        "30",
    ]));
    let pid = wait_for("the agent's pid", || state(&daemon, "slow")["pid"].as_u64());
    daemon.crash();
    // The holder stops it at its timeout, with no daemon to tell.
    wait_for("the holder to end the agent", || {
        (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
    });
    let daemon = Daemon::start(dir.path());
    let ended = wait_end(&daemon, "slow");
    assert_eq!(ended["state"], "killed", "{ended}");
    assert_eq!(ended["signal"], 15);
    assert_eq!(ended["timed_out"], true, "{ended}");
    assert_eq!(ended["restarts"].as_u64().unwrap_or(0), 0, "{ended}");
}

#[test]
fn bad_restart_policies_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let unknown = daemon.drover(&["spawn", "--restart", "sometimes", "--", "true"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        stderr(&unknown)
            .contains("\"sometimes\" is not a restart policy (on-failure, always, never)"),
        "{}",
        stderr(&unknown)
    );
    // The daemon's refusals (`bad_request`, exit 2): a first wait under 10 ms, and a longest
    // wait under a second (an agent that fails at once would restart ever faster).
    for (delays, message) in [
        (
            &["--restart-delay", "1ms"][..],
            "restart.backoff_ms must be 10 to 86400000",
        ),
        (
            &["--restart-delay", "10ms", "--restart-max-delay", "100ms"][..],
            "restart.max_backoff_ms must be 1000",
        ),
    ] {
        let mut args = vec!["spawn", "--restart", "always"];
        args.extend_from_slice(delays);
        args.extend_from_slice(&["--", "true"]);
        let refused = daemon.drover(&args);
        assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
        assert!(stderr(&refused).contains(message), "{}", stderr(&refused));
    }
    // Nothing was started.
    assert_eq!(ok(daemon.drover(&["ls", "-q"])), "");
}

#[test]
fn a_restart_waiting_when_the_daemon_restarts_goes_ahead_under_the_next_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &["--leave-agents"]);
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "later",
        "--restart",
        "on-failure:1",
        "--restart-delay",
        "5s",
        "--",
        "sh",
        "-c",
        "echo run; exit 3",
    ]));
    let waiting = wait_for("the agent to wait for its restart", || {
        let info = state(&daemon, "later");
        (info["state"] == "restarting").then_some(info)
    });
    daemon.stop();
    let daemon = Daemon::start(dir.path());
    // The next daemon keeps the same restart: the first daemon never started it.
    let kept = state(&daemon, "later");
    if kept["state"] == "restarting" {
        assert_eq!(kept["restart_at"], waiting["restart_at"], "{kept}");
        assert_eq!(kept["restarts"].as_u64().unwrap_or(0), 0, "{kept}");
    } else {
        // Only once its time has come.
        assert!(
            drover_proto::now_ns() >= waiting["restart_at"].as_i64().unwrap(),
            "{kept}"
        );
    }
    let ended = wait_end(&daemon, "later");
    assert_eq!(ended["state"], "exited");
    assert_eq!(ended["exit_code"], 3);
    assert_eq!(ended["restarts"], 1);
    assert_eq!(
        log(&daemon, "later"),
        vec![(1, "run".to_owned()), (2, "run".to_owned())]
    );
}

/// Holder directories left in the state directory.
fn holder_dirs(state_dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(state_dir.join("holders"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Spawn `two`, whose first run fails and whose second prints `second` and keeps running, and
/// wait for the second run; its id. `flags` holds the file that tells the runs apart.
fn spawn_two_runs(daemon: &Daemon, flags: &std::path::Path) -> String {
    let script = format!(
        "if [ -e {f} ]; then echo second; exec sleep 1000; else touch {f}; echo first; exit 1; fi",
        f = flags.join("ran").display()
    );
    let id = ok(daemon.drover(&[
        "spawn",
        "--name",
        "two",
        "--restart",
        "on-failure",
        "--restart-delay",
        "10ms",
        "--",
        "sh",
        "-c",
        &script,
    ]))
    .trim()
    .to_owned();
    wait_for("the second run", || {
        (log(daemon, "two").len() == 2).then_some(())
    });
    id
}

#[test]
fn a_second_run_is_reattached_after_a_daemon_restart_and_its_holder_goes_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let flags = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(dir.path(), &["--leave-agents"]);
    let id = spawn_two_runs(&daemon, flags.path());
    // Run 2 runs under its own holder, `<id>.2`.
    assert_eq!(holder_dirs(dir.path()), vec![format!("{id}.2")]);
    daemon.stop();
    let daemon = Daemon::start(dir.path());
    let info = state(&daemon, "two");
    assert_eq!(
        (info["state"].as_str(), info["restarts"].as_u64()),
        (Some("running"), Some(1))
    );
    let stopped = json(&daemon, &["stop", "two", "--grace", "1s"]);
    let stopped = if stopped["state"] == "stopping" {
        wait_end(&daemon, "two")
    } else {
        stopped
    };
    assert_eq!(stopped["state"], "killed", "{stopped}");
    assert_eq!(
        log(&daemon, "two"),
        vec![(1, "first".to_owned()), (2, "second".to_owned())]
    );
    wait_for("the holders to be released", || {
        holder_dirs(dir.path()).is_empty().then_some(())
    });
}

#[test]
fn a_lost_holder_of_a_second_run_takes_its_agent_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let flags = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    spawn_two_runs(&daemon, flags.path());
    let pid = state(&daemon, "two")["pid"]
        .as_u64()
        .expect("the second run's pid");
    let holder = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .expect("the agent runs")
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_owned))
        .and_then(|ppid| ppid.parse::<u32>().ok())
        .expect("its holder's pid");
    signal(holder, "KILL");
    let lost = wait_end(&daemon, "two");
    assert_eq!(lost["state"], "lost", "{lost}");
    // Its processes (found by the agent's id, not the holder's `<id>.2`) were killed.
    wait_for("the second run's process to be killed", || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let gone = stat
            .rsplit_once(')')
            .is_none_or(|(_, rest)| rest.trim_start().starts_with('Z'));
        gone.then_some(())
    });
}
