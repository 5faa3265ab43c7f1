//! The `drover` binary end to end, as a new user would drive it.

#![allow(clippy::unwrap_used)]

mod common;
mod habits;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

#[test]
fn the_quick_start_tour_works_and_reads_well() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());

    let run = daemon.drover(&["run", "--", "echo", "hi"]);
    assert_eq!(stdout(&run), "hi\n");
    assert_eq!(run.status.code(), Some(0));
    let run = daemon.drover(&["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(stdout(&run), "out\n");
    assert_eq!(stderr(&run), "err\n");
    assert_eq!(
        run.status.code(),
        Some(3),
        "run exits with the agent's code"
    );

    let id = ok(daemon.drover(&[
        "spawn", "--name", "s", "--label", "team=a", "--", "sleep", "100",
    ]));
    assert_eq!(id.trim().len(), 36, "spawn prints the id: {id:?}");
    let ls = ok(daemon.drover(&["ls"]));
    let header = ls.lines().next().unwrap();
    assert!(header.starts_with("ID"), "{ls}");
    assert!(header.contains("STATE"), "{ls}");
    let row = ls.lines().find(|l| l.contains(" s ")).expect("a row for s");
    assert!(row.contains("running"), "{ls}");
    assert!(
        !ls.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );

    assert_eq!(
        ok(daemon.drover(&["pause", "s"])).trim(),
        "paused s (paused)"
    );
    let agents = json(&daemon, &["ls", "--state", "paused"]);
    assert_eq!(agents.as_array().unwrap().len(), 1);
    assert_eq!(agents[0]["name"], "s");
    assert_eq!(agents[0]["labels"]["team"], "a");
    assert_eq!(
        ok(daemon.drover(&["resume", "s"])).trim(),
        "resumed s (running)"
    );
    let stopped = ok(daemon.drover(&["stop", "s", "--grace", "1s"]));
    assert_eq!(stopped.trim(), "stopped s (killed)");
    let show = ok(daemon.drover(&["show", "s"]));
    assert!(show.contains("state    killed"), "{show}");
    assert!(show.contains("signal TERM"), "{show}");
    assert!(
        show.contains("log      seq 1..1, 0 B of output kept, 0 B on disk"),
        "{show}"
    );

    let logs = ok(daemon.drover(&["logs", &id.trim()[..13]]));
    assert_eq!(logs, "");
    let health = ok(daemon.drover(&["health"]));
    assert!(health.starts_with("ok: drover"), "{health}");
    let stats = json(&daemon, &["stats"]);
    assert_eq!(stats["spawns"], 3);
    assert_eq!(ok(daemon.drover(&["rm", "s"])).trim(), "removed s");
    daemon.stop();
}

#[test]
fn errors_exit_with_the_documented_codes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let missing = daemon.drover(&["show", "nope"]);
    assert_eq!(missing.status.code(), Some(3), "not_found");
    assert!(
        stderr(&missing).starts_with("drover: error: not_found:"),
        "{}",
        stderr(&missing)
    );
    ok(daemon.drover(&["run", "--name", "done", "--", "true"]));
    assert_eq!(
        daemon.drover(&["pause", "done"]).status.code(),
        Some(4),
        "invalid_state"
    );
    assert_eq!(
        daemon.drover(&["rm", "--force", "done"]).status.code(),
        Some(0)
    );
    let bad = daemon.drover(&["spawn", "--backend", "claude"]);
    assert_eq!(bad.status.code(), Some(2), "bad_request: {}", stderr(&bad));
    let waited = daemon.drover(&["wait", "--timeout", "100ms", &spawn_sleeper(&daemon)]);
    assert_eq!(waited.status.code(), Some(9), "timeout");
    let nowhere = dir.path().join("none/control.sock");
    let unreachable = std::process::Command::new(drover_bin())
        .args(["--control", &format!("ipc://{}", nowhere.display()), "ls"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        stderr(&unreachable).contains("no daemon at"),
        "{}",
        stderr(&unreachable)
    );
    // A TCP endpoint without keys says how to get them, instead of trying in clear.
    let keyless = std::process::Command::new(drover_bin())
        .args(["--control", "tcp://127.0.0.1:1", "ls"])
        .env("DROVER_CONFIG_DIR", dir.path().join("config"))
        .output()
        .unwrap();
    assert_eq!(keyless.status.code(), Some(1));
    assert!(
        stderr(&keyless).contains("drover context add"),
        "{}",
        stderr(&keyless)
    );
    daemon.stop();
}

fn spawn_sleeper(daemon: &Daemon) -> String {
    ok(daemon.drover(&["spawn", "--", "sleep", "100"]))
        .trim()
        .to_owned()
}

#[test]
fn send_writes_stdin_and_logs_follow_a_chatty_agent() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&["spawn", "-i", "--name", "c", "--", "cat"]));
    ok(daemon.drover(&["send", "c", "hello"]));
    ok(daemon.drover_with_stdin(&["send", "c", "-", "--close"], Some(b"from stdin\n")));
    let waited = daemon.drover(&["wait", "c"]);
    assert_eq!(waited.status.code(), Some(0));
    assert_eq!(ok(daemon.drover(&["logs", "c"])), "hello\nfrom stdin\n");

    ok(daemon.drover(&["spawn", "--name", "chatty", "--", "sh", "-c", "seq 1 30000"]));
    let followed = ok(daemon.drover(&["logs", "-f", "chatty"]));
    let expected: String = (1..=30000).map(|i| format!("{i}\n")).collect();
    assert!(
        followed == expected,
        "logs -f printed every line once, in order"
    );
    let tail = ok(daemon.drover(&["logs", "--tail", "2", "chatty"]));
    assert_eq!(tail, "29999\n30000\n");
    // A reader that closes the pipe early is not an error (and never a panic).
    let piped = std::process::Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; \"$0\" logs chatty | head -1",
            drover_bin(),
        ])
        .env("DROVER_CONTROL", &daemon.control)
        .output()
        .unwrap();
    assert_eq!(stdout(&piped), "1\n");
    assert!(piped.status.success(), "{}", stderr(&piped));
    assert!(!stderr(&piped).contains("panicked"), "{}", stderr(&piped));
    daemon.stop();
}

#[test]
fn a_daemon_killed_with_sigkill_comes_back_and_reattaches_its_running_agents() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let finished = daemon.drover(&[
        "run",
        "--name",
        "finished",
        "--",
        "sh",
        "-c",
        "echo kept; exit 2",
    ]);
    assert_eq!(finished.status.code(), Some(2));
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "a",
        "--",
        "sh",
        "-c",
        "echo ready; exec sleep 100",
    ]));
    ok(daemon.drover(&["spawn", "--name", "b", "--", "sleep", "100"]));
    wait_for("a's ready line", || {
        (stdout(&daemon.drover(&["logs", "a"])) == "ready\n").then_some(())
    });
    let pids = |daemon: &Daemon| -> Vec<u64> {
        json(daemon, &["ls"])
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|agent| agent["pid"].as_u64())
            .collect()
    };
    let before = pids(&daemon);
    assert_eq!(before.len(), 2);
    daemon.crash();

    // The holders kept the agents: the new daemon finds them running, same processes.
    let daemon = Daemon::start(dir.path());
    let after = json(&daemon, &["ls", "--reverse"]);
    let states: Vec<(String, String)> = after
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("finished".to_owned(), "exited".to_owned()),
            ("a".to_owned(), "running".to_owned()),
            ("b".to_owned(), "running".to_owned()),
        ]
    );
    assert_eq!(pids(&daemon), before);
    assert_eq!(after[0]["exit_code"], 2);
    assert_eq!(ok(daemon.drover(&["logs", "finished"])), "kept\n");
    assert_eq!(ok(daemon.drover(&["logs", "a"])), "ready\n");
    // And it controls them again.
    assert_eq!(
        ok(daemon.drover(&["stop", "a", "--grace", "1s"])).trim(),
        "stopped a (killed)"
    );
    // Answered once SIGKILL is sent: never "killed b (running)".
    let killed = ok(daemon.drover(&["kill", "b"]));
    assert!(
        killed == "sent SIGKILL to b (running)\n" || killed == "killed b (killed)\n",
        "{killed}"
    );
    wait_for("b to end", || {
        (json(&daemon, &["show", "b"])["state"] == "killed").then_some(())
    });
    daemon.stop();
}

#[test]
fn serve_refuses_a_wildcard_bind_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(drover_bin())
        .args(["serve", "--control", "tcp://0.0.0.0:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).is_empty(), "no ready line");
    assert!(
        stderr(&output).contains("refusing to bind tcp://0.0.0.0:0")
            && stderr(&output).contains("is a wildcard"),
        "{}",
        stderr(&output)
    );
}

/// A configuration the daemon cannot read is reported with the lines of its parser's message
/// (the line and a caret under the key), not as one line of `\u{a}` escapes.
#[test]
fn serve_reports_a_bad_config_file_on_its_own_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drover.toml");
    std::fs::write(&config, "max_agents = 5\nmax_agent = 5\n").unwrap();
    let output = std::process::Command::new(drover_bin())
        .args(["serve", "--control", "tcp://127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = stderr(&output);
    assert!(!said.contains("\\u{a}"), "{said}");
    assert!(said.contains("TOML parse error at line 2"), "{said}");
    assert!(
        said.lines().any(|l| l.starts_with("  2 | max_agent = 5")),
        "{said}"
    );
}

/// The command may follow the options without `--`, as with `docker run IMAGE CMD...`; from
/// the command on, every word is its own (flags included), and `--` still works.
#[test]
fn run_and_spawn_take_the_command_without_a_double_dash() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let printed = daemon.drover(&["run", "--name", "e", "echo", "-n", "hi"]);
    assert_eq!(printed.status.code(), Some(0), "{}", stderr(&printed));
    assert_eq!(stdout(&printed), "hi");
    let failed = daemon.drover(&["run", "sh", "-c", "exit 4"]);
    assert_eq!(failed.status.code(), Some(4), "{}", stderr(&failed));
    let id = ok(daemon.drover(&["spawn", "--", "echo", "--name", "x"]));
    ok(daemon.drover(&["wait", id.trim()]));
    assert_eq!(ok(daemon.drover(&["logs", id.trim()])), "--name x\n");
    // A mistyped option is a usage error, not the start of the command.
    let typo = daemon.drover(&["run", "--timout", "5s", "--", "echo", "hi"]);
    assert_eq!(typo.status.code(), Some(1), "{}", stderr(&typo));
    assert!(stderr(&typo).contains("--timeout"), "{}", stderr(&typo));
    // A name of 8 hex digits would read as a handle: refused.
    let hex = daemon.drover(&["spawn", "--name", "deadBEEF", "--", "true"]);
    assert_eq!(hex.status.code(), Some(2), "{}", stderr(&hex));
    assert!(
        stderr(&hex).contains("the form of an agent's handle"),
        "{}",
        stderr(&hex)
    );
    // A selector that matches nothing says so (and is no failure).
    let none = daemon.drover(&["stop", "-l", "team=nobody"]);
    assert_eq!(none.status.code(), Some(0), "{}", stderr(&none));
    assert_eq!(stderr(&none), "drover: no agent matches\n");
    // docker's names for listing and showing.
    let (ps, ls) = (ok(daemon.drover(&["ps"])), ok(daemon.drover(&["ls"])));
    assert_eq!(ps.lines().next(), ls.lines().next(), "{ps}");
    assert_eq!(ps.lines().count(), ls.lines().count(), "{ps}");
    assert_eq!(json(&daemon, &["inspect", "e"])["name"], "e");
    daemon.stop();
}

#[test]
fn serve_refuses_a_shared_state_dir() {
    let output = std::process::Command::new(drover_bin())
        .args([
            "serve",
            "--control",
            "tcp://127.0.0.1:0",
            "--state-dir",
            "/tmp",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is shared"), "{}", stderr(&output));
    let tmp = std::fs::metadata("/tmp").unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(&tmp.permissions());
    assert_eq!(mode & 0o1777, 0o1777, "/tmp was left alone");
    // Group-writable: a group member may already have planted files in it.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o770),
    )
    .unwrap();
    let output = std::process::Command::new(drover_bin())
        .args(["serve", "--control", "tcp://127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is shared"), "{}", stderr(&output));
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let output = std::process::Command::new(drover_bin())
        .args([
            "serve",
            "--control",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ])
        .args(["--http", "127.0.0.1:0", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("another drover daemon is using"),
        "{}",
        stderr(&output)
    );
    daemon.stop();
}

#[test]
fn leave_agents_keeps_them_running_and_the_next_daemon_reattaches_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with(dir.path(), &["--on-shutdown", "leave"]);
    ok(daemon.drover(&["spawn", "--name", "stay", "--", "sleep", "100"]));
    let pid = json(&daemon, &["show", "stay"])["pid"].as_u64().unwrap();
    signal(daemon.child.id(), "TERM");
    let status = daemon.child.wait().unwrap();
    assert!(status.success());
    let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(alive, "the agent outlived the daemon");
    let daemon = Daemon::start(dir.path());
    let shown = json(&daemon, &["show", "stay"]);
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["pid"].as_u64(), Some(pid));
    ok(daemon.drover(&["stop", "stay", "--grace", "1s"]));
    daemon.stop();
}

#[test]
fn logs_of_several_agents_are_prefixed_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    for name in ["a", "b"] {
        ok(daemon.drover(&[
            "run",
            "--name",
            name,
            "-l",
            "job=x",
            "--",
            "sh",
            "-c",
            "echo one; echo two",
        ]));
    }
    ok(daemon.drover(&["run", "--name", "other", "--", "echo", "three"]));
    let logs = ok(daemon.drover(&["logs", "--label", "job=x"]));
    assert_eq!(logs, "[a] one\n[a] two\n[b] one\n[b] two\n");
    let plain = ok(daemon.drover(&["logs", "--label", "job=x", "--no-prefix"]));
    assert_eq!(plain, "one\ntwo\none\ntwo\n");
    let stamped = ok(daemon.drover(&["logs", "a", "--timestamps"]));
    let first = stamped.lines().next().unwrap();
    assert!(first.ends_with("Z one"), "{first}");
    assert_eq!(first.len(), "2026-01-01T00:00:00.000Z one".len(), "{first}");
    let events = ok(daemon.drover(&["events"]));
    assert!(events.lines().count() >= 9, "{events}");
    assert!(events.contains(" exit "), "{events}");
    daemon.stop();
}

#[test]
fn ctrl_c_on_run_stops_the_agent_and_reports_how_it_ended() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Ctrl-C, SIGTERM as a service manager sends it, and SIGHUP as a closing terminal sends
    // it, all stop the agent.
    for name in ["INT", "TERM", "HUP"] {
        let agent = format!("r-{name}");
        let mut run = std::process::Command::new(drover_bin())
            .args(["run", "--name", &agent, "--", "sh", "-c"])
            .arg("echo ready; exec sleep 100")
            .env("DROVER_CONTROL", &daemon.control)
            .env("DROVER_CONFIG_DIR", dir.path().join("no-config"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(run.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        signal(run.id(), name);
        let output = wait_output(run);
        assert_eq!(output.status.code(), Some(128 + 15), "{}", stderr(&output));
        assert!(stderr(&output).contains("stopping"), "{}", stderr(&output));
        assert_eq!(json(&daemon, &["show", &agent])["state"], "killed");
    }
    daemon.stop();
}

#[test]
fn logs_page_past_the_reply_cap_for_history_tail_and_follow() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // 12 000 lines of 1 KiB: 12 MiB, more than one 8 MiB reply holds.
    let script = "seq -f '%01023g' 1 12000";
    ok(daemon.drover(&["spawn", "--name", "big", "--", "sh", "-c", script]));
    let followed = ok(daemon.drover(&["logs", "-f", "big"]));
    let expected: Vec<String> = (1..=12000).map(|i| format!("{i:01023}")).collect();
    let lines: Vec<&str> = followed.lines().collect();
    assert!(
        lines == expected,
        "logs -f printed {} of 12000 lines",
        lines.len()
    );
    let history = ok(daemon.drover(&["logs", "big"]));
    assert!(history == followed, "history matches the follow");
    let tail = ok(daemon.drover(&["logs", "-n", "11000", "big"]));
    let lines: Vec<&str> = tail.lines().collect();
    assert!(
        lines == expected[1000..],
        "tail printed {} lines",
        lines.len()
    );
    daemon.stop();
}

#[test]
fn logs_follow_through_a_stalled_terminal_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "-i",
        "--name",
        "chatty",
        "--",
        "sh",
        "-c",
        "read go; seq 1 200000",
    ]));
    // The reader stops reading for a second while the agent writes everything: drover blocks
    // on its stdout, its live stream falls behind, and it must refill from the store.
    let follower = std::process::Command::new("bash")
        .args([
            "-c",
            "\"$0\" logs -f chatty | { sleep 1; cat; }",
            drover_bin(),
        ])
        .env("DROVER_CONTROL", &daemon.control)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ok(daemon.drover(&["send", "chatty", "go"]));
    let output = wait_output(follower);
    assert!(output.status.success(), "{}", stderr(&output));
    let expected: String = (1..=200_000).map(|i| format!("{i}\n")).collect();
    assert!(stdout(&output) == expected, "every line, once, in order");
    daemon.stop();
}

/// `drover logs` writes a batch of records at a time, yet stdout and stderr lines sent to one
/// file come out in the log's `seq` order (the other stream is flushed at each switch).
#[test]
fn logs_keeps_stdout_and_stderr_in_seq_order_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // The pauses only make the streams interleave in the log; the test waits on the end.
    let script = "for i in 1 2 3 4 5; do echo out$i; sleep 0.02; echo err$i >&2; sleep 0.02; done";
    let id = ok(daemon.drover(&["spawn", "--", "sh", "-c", script]))
        .trim()
        .to_owned();
    ok(daemon.drover(&["wait", &id]));
    // The log in seq order, with each record's stream.
    let records: Vec<(String, String)> = ok(daemon.drover(&["--json", "logs", &id]))
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
            let text = record["text"].as_str().expect("text").to_owned();
            (record["stream"].as_str().expect("stream").to_owned(), text)
        })
        .collect();
    // Capture order is the holder's to decide; what matters is that the streams switch often.
    let switches = records.windows(2).filter(|w| w[0].0 != w[1].0).count();
    assert!(
        switches >= 5,
        "the streams interleave in the log: {records:?}"
    );
    let mut lines: Vec<&str> = records.iter().map(|(_, text)| text.as_str()).collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = (1..=5)
        .flat_map(|i| [format!("out{i}\n"), format!("err{i}\n")])
        .collect();
    expected.sort_unstable();
    assert_eq!(lines, expected, "every line once");
    let in_seq_order: String = records.iter().map(|(_, text)| text.as_str()).collect();

    // Both streams into one file, as `2>&1` does.
    let path = dir.path().join("both");
    let file = std::fs::File::create(&path).unwrap();
    let status = daemon
        .command(&["logs", &id])
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), in_seq_order);
}

/// `drover logs -f a b` across a daemon restart goes on with the agents it named, by id. Here
/// `a` ended (its end printed), then was removed and its name taken by a new agent while the
/// follow waited for the daemon: the follow prints nothing of that one, and `b` to its end.
/// Before, the follow resolved the names again and followed the new `a` from its start (or
/// failed with `not_found` once `a` was removed, leaving `b` unfollowed).
#[test]
fn a_follow_of_named_agents_goes_on_with_the_same_agents_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&["spawn", "--name", "a", "--", "sh", "-c", "echo a-said"]));
    let b = "echo b-ready; read x; echo b-after";
    ok(daemon.drover(&["spawn", "-i", "--name", "b", "--", "sh", "-c", b]));
    wait_for("a to end", || {
        (json(&daemon, &["show", "a"])["state"] == "exited").then_some(())
    });
    let mut follow = daemon
        .command(&["logs", "-f", "a", "b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(String::new()));
    let reader = {
        let printed = Arc::clone(&printed);
        let stdout = follow.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                printed.lock().unwrap().push_str(&line);
                printed.lock().unwrap().push('\n');
            }
        })
    };
    wait_for("both agents' first lines", || {
        let printed = printed.lock().unwrap();
        (printed.contains("a-said") && printed.contains("b-ready")).then_some(())
    });
    daemon.crash();

    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&["rm", "a"]));
    let imposter = "echo imposter; exec sleep 600";
    ok(daemon.drover(&["spawn", "--name", "a", "--", "sh", "-c", imposter]));
    wait_for("the new a's line", || {
        (stdout(&daemon.drover(&["logs", "a"])) == "imposter\n").then_some(())
    });
    ok(daemon.drover(&["send", "b", "go"]));
    let status = wait_child(&mut follow);
    reader.join().unwrap();
    let printed = printed.lock().unwrap().clone();
    assert!(status.success(), "{status}: {printed}");
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(
        lines[0].ends_with("a-said") || lines[1].ends_with("a-said"),
        "{printed}"
    );
    assert!(lines[2].ends_with("b-after"), "{printed}");
    assert!(!printed.contains("imposter"), "{printed}");
    ok(daemon.drover(&["kill", "a"]));
}

/// `--context` names the daemon for `spawn` as for every command (kubectl's and docker's habit);
/// the spec's free text is `--agent-context`, which the agent reads as `DROVER_AGENT_CONTEXT`,
/// never `DROVER_CONTEXT` (that would send a `drover` the agent runs to a daemon named by it).
/// Before, `drover spawn --context prod -- ...` ran the agent here, with `prod` as its text.
#[test]
fn spawn_takes_context_as_the_daemon_and_agent_context_as_the_agents_text() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let script = "echo \"$DROVER_AGENT_CONTEXT\"; echo \"${DROVER_CONTEXT-unset}\"";
    let run = daemon.drover(&[
        "run",
        "--agent-context",
        "fix the flaky test",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(
        stdout(&run),
        "fix the flaky test\nunset\n",
        "{}",
        stderr(&run)
    );
    let elsewhere = daemon.drover(&["spawn", "--context", "prod", "--", "true"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(
        stderr(&elsewhere).contains("no context named \"prod\""),
        "{}",
        stderr(&elsewhere)
    );
    assert_eq!(
        json(&daemon, &["ls"]).as_array().unwrap().len(),
        1,
        "nothing spawned here"
    );
}

/// `get`s the daemon has served: a wait looks each agent up by id before waiting on it.
fn gets_served(daemon: &Daemon) -> u64 {
    let stats: serde_json::Value =
        serde_json::from_str(&ok(daemon.drover(&["--json", "stats"]))).unwrap();
    stats["requests"]["get"].as_u64().unwrap_or(0)
}

/// `count` agents named `{prefix}{i}`, labelled `job={prefix}`, that run until killed.
fn sleepers(daemon: &Daemon, prefix: &str, count: usize) {
    for i in 0..count {
        let name = format!("{prefix}{i}");
        let label = format!("job={prefix}");
        ok(daemon.drover(&[
            "spawn", "--name", &name, "-l", &label, "--", "sleep", "1000",
        ]));
    }
}

#[test]
fn wait_takes_more_agents_than_one_connection_may_have_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Every end, over 80 agents (a connection has 64 requests in flight at most).
    sleepers(&daemon, "m", 80);
    let before = gets_served(&daemon);
    let mut all = daemon
        .command(&["wait", "-l", "job=m"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the wait to look up its 80 agents", || {
        (gets_served(&daemon) >= before + 80).then_some(())
    });
    ok(daemon.drover(&["kill", "-l", "job=m"]));
    let status = wait_child(&mut all);
    let out = all.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.lines().count(), 80, "{stdout}");

    // The first end among 70, whichever of them it is.
    sleepers(&daemon, "y", 70);
    let before = gets_served(&daemon);
    let mut any = daemon
        .command(&["wait", "--any", "-l", "job=y"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the wait to look up its 70 agents", || {
        (gets_served(&daemon) >= before + 70).then_some(())
    });
    // The newest: its wait is among those queued past the connection's 64 in flight, so only
    // the rounds that give each queued wait its turn see its end in time.
    ok(daemon.drover(&["kill", "y69"]));
    // Well within one 30 s round: a queued wait is asked in its turn (2 s rounds).
    let status = wait_for_within(Duration::from_secs(15), "wait --any to see y69 end", || {
        any.try_wait().expect("try_wait")
    });
    let out = any.wait_with_output().unwrap();
    assert_eq!(
        status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("y69 "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);
    ok(daemon.drover(&["kill", "-l", "job=y"]));
}

#[test]
fn send_from_stdin_waits_for_a_slow_reader_instead_of_giving_up_on_a_full_queue() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Reads nothing for a second: 12 MB is three times what its stdin queue holds.
    ok(daemon.drover(&[
        "spawn",
        "-i",
        "--name",
        "slow",
        "--",
        "sh",
        "-c",
        "sleep 1; wc -c",
    ]));
    let input = vec![b'x'; 12_000_000];
    let sent = daemon.drover_with_stdin(&["send", "slow", "-", "--close"], Some(&input));
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    ok(daemon.drover(&["wait", "slow"]));
    let counted = ok(daemon.drover(&["logs", "slow"]));
    assert_eq!(counted.trim(), "12000000");
}

#[test]
fn resume_and_pause_by_selector_pick_the_agents_they_can_act_on() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    for name in ["r1", "r2", "r3"] {
        ok(daemon.drover(&["spawn", "--name", name, "-l", "t=a", "--", "sleep", "1000"]));
    }
    ok(daemon.drover(&["pause", "r1"]));
    // Only the paused one is resumed; the running ones are not errors.
    let resumed = daemon.drover(&["resume", "-l", "t=a"]);
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&resumed.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("resumed r1"), "{lines:?}");
    // And pause skips the one already paused.
    ok(daemon.drover(&["pause", "r2"]));
    let paused = daemon.drover(&["pause", "--all"]);
    assert_eq!(
        paused.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&paused.stderr)
    );
    let text = String::from_utf8_lossy(&paused.stdout).into_owned();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(!text.contains("r2"), "{text}");
    // A named agent is still acted on, and refused when it cannot be.
    ok(daemon.drover(&["resume", "r1", "r2"]));
    let refused = daemon.drover(&["resume", "r1"]);
    assert_eq!(refused.status.code(), Some(4), "invalid_state");
    ok(daemon.drover(&["kill", "-l", "t=a"]));
}

#[test]
fn run_stops_the_agent_it_started_when_its_output_cannot_be_followed() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // A context whose PUB endpoint nothing listens on.
    ok(daemon.drover(&[
        "context",
        "add",
        "badpub",
        "--control",
        &daemon.control,
        "--pub",
        "tcp://127.0.0.1:1",
    ]));
    let run = daemon.drover(&[
        "--context",
        "badpub",
        "run",
        "--name",
        "unseen",
        "--",
        "sleep",
        "1000",
    ]);
    assert_ne!(run.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("its output cannot be followed; stopped agent"),
        "{stderr}"
    );
    // Ended by the stop's SIGTERM: 128 + 15.
    let waited = daemon.drover(&["wait", "unseen"]);
    assert_eq!(waited.status.code(), Some(143), "{waited:?}");
}

#[test]
fn logs_refuses_all_with_a_selector_rather_than_ignoring_the_selector() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let both = daemon.drover(&["logs", "--all", "-l", "team=a"]);
    assert_eq!(both.status.code(), Some(1), "a usage error");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn the_local_context_follows_drover_state_dir_as_serve_and_auth_do() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let health = |state_dir: Option<&std::path::Path>| {
        let mut command = daemon.command(&["--json", "health"]);
        command
            .env_remove("DROVER_CONTROL")
            .env("XDG_DATA_HOME", elsewhere.path());
        match state_dir {
            Some(dir) => command.env("DROVER_STATE_DIR", dir),
            None => command.env_remove("DROVER_STATE_DIR"),
        };
        command.stdin(Stdio::null()).output().unwrap()
    };
    let reached = health(Some(&daemon.state_dir));
    assert!(
        reached.status.success(),
        "{}",
        String::from_utf8_lossy(&reached.stderr)
    );
    // Without it, the default state directory (here, one with no daemon).
    let missed = health(None);
    assert!(!missed.status.success());
    assert!(String::from_utf8_lossy(&missed.stderr).contains("no daemon at"));
}

/// Records the store lost for good (here, as the registry recorded them after a full disk)
/// are said on stderr by a plain `drover logs`, which prints the rest: before, it printed what
/// was kept and nothing about the hole.
#[test]
fn logs_says_which_records_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let id = ok(daemon.drover(&["spawn", "--name", "holed", "--", "seq", "1", "5"]));
    let id = id.trim().to_owned();
    ok(daemon.drover(&["wait", "holed"]));
    daemon.stop();
    // What the daemon writes when an agent ends with records it could not store.
    let registry = dir.path().join("registry.sqlite3");
    let status = std::process::Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import sqlite3; c = sqlite3.connect('{}'); \
             c.execute(\"INSERT INTO log_gaps (agent_id, from_seq, to_seq) VALUES ('{id}', 6, 8)\"); \
             c.commit()",
            registry.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let daemon = Daemon::start(dir.path());
    let output = daemon.drover(&["logs", "holed"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "1\n2\n3\n4\n5\n");
    assert_eq!(
        stderr(&output),
        "drover: holed: records 6 to 8 were lost: the daemon could not store them\n"
    );
    daemon.stop();
}

/// Followed together, agents' lines stay whole and each starts with its agent's prefix: one
/// agent's partial line ("building...") is ended before another's line is printed, and its
/// continuation comes on a line of its own, prefixed again. Before, the other agent's line was
/// glued on ("[a] building...[b] b1") and a grep for "^[b]" missed it.
#[test]
fn merged_follows_never_print_a_line_under_another_agents_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let gates = tempfile::tempdir().unwrap();
    let gate = |name: &str| gates.path().join(name).display().to_string();
    let wait = |name: &str| format!("while [ ! -e {} ]; do sleep 0.01; done", gate(name));
    let a = format!("printf 'building...'; {}; printf ' ok\\n'", wait("a"));
    let b = format!("{}; echo b1; {}", wait("b"), wait("end"));
    ok(daemon.drover(&["spawn", "--name", "a", "--", "sh", "-c", &a]));
    ok(daemon.drover(&["spawn", "--name", "b", "--", "sh", "-c", &b]));
    let mut follow = daemon
        .command(&["logs", "-f", "a", "b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the follow has printed so far, read as it comes.
    let printed = Arc::new(Mutex::new(Vec::new()));
    let mut pipe = follow.stdout.take().unwrap();
    let kept = Arc::clone(&printed);
    let reader = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut pipe, &mut chunk) {
            if n == 0 {
                break;
            }
            kept.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let shows = |text: &str| {
        let printed = printed.lock().unwrap();
        (String::from_utf8_lossy(&printed) == text).then_some(())
    };
    // One step at a time, each printed by the follow before the next starts.
    wait_for("a's partial line", || shows("[a] building..."));
    std::fs::write(gate("b"), b"").unwrap();
    wait_for("b's line", || shows("[a] building...\n[b] b1\n"));
    std::fs::write(gate("a"), b"").unwrap();
    ok(daemon.drover(&["wait", "a"]));
    std::fs::write(gate("end"), b"").unwrap();
    let output = wait_output(follow);
    reader.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&printed.lock().unwrap()),
        "[a] building...\n[b] b1\n[a]  ok\n"
    );
    daemon.stop();
}

/// What the CLI says about an agent is shown, never run by the terminal: here a name given with
/// an escape sequence in it, in `show`'s error (the daemon's message) and in the per-agent
/// report of `stop` (a remote daemon's names and messages could say anything).
#[test]
fn reports_reach_the_terminal_without_live_escapes() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    for verb in ["show", "stop"] {
        let output = daemon.drover(&[verb, "x\u{1b}]0;TITLE\u{7}"]);
        assert_eq!(output.status.code(), Some(3), "{verb}: not_found");
        let said = stderr(&output);
        assert!(
            !said.contains('\u{1b}') && !said.contains('\u{7}'),
            "{verb}: {said:?}"
        );
        assert!(said.contains(r"x\u{1b}]0;TITLE\u{7}"), "{verb}: {said}");
    }
    // A label's value is the spawner's to choose: `ls` and `show` show it, never run it.
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "lab",
        "-l",
        "k=v\u{1b}]0;TITLE\u{7}",
        "--",
        "true",
    ]));
    ok(daemon.drover(&["wait", "lab"]));
    for args in [&["ls", "--wide"][..], &["show", "lab"][..]] {
        let said = ok(daemon.drover(args));
        assert!(
            !said.contains('\u{1b}') && !said.contains('\u{7}'),
            "{args:?}: {said:?}"
        );
        assert!(said.contains(r"k=v\u{1b}]0;TITLE\u{7}"), "{args:?}: {said}");
    }
    daemon.stop();
}

/// The daemon raises its own open-files soft limit to the hard one; its agents get the limit
/// it was started with (as systemd gives services' children 1024), not that. Before, a daemon
/// started with 1024 gave its agents the hard limit (about a million in many containers).
#[test]
fn agents_get_the_open_files_limit_the_daemon_was_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let wrapper = ["prlimit".to_owned(), "--nofile=1024:".to_owned()];
    let daemon = Daemon::start_wrapped(dir.path(), &[], &wrapper);
    let raised: u64 = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    assert!(raised > 1024, "the daemon raised its own: {raised}");
    let shown = ok(daemon.drover(&["run", "--", "sh", "-c", "ulimit -Sn"]));
    assert_eq!(shown, "1024\n");
    daemon.stop();
}
