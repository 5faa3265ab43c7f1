//! `logs -f` and `events -f` go on across a daemon restart, saying so on stderr, without a gap
//! or a duplicate.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Instant;

use crate::common::*;

/// Lines of a child's stdout as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn follows_go_on_across_a_daemon_restart_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    // The agent outlives the first daemon (under its holder), which therefore never reports its
    // end: it is killed while no daemon runs, and only the next one, re-attaching to the
    // holder, reports it (`killed`, signal 9), so the follow must cross the restart to finish.
    let daemon = Daemon::start_with(dir.path(), &["--leave-agents"]);
    let script = "i=1; while [ $i -le 100000 ]; do echo $i; i=$((i+1)); sleep 0.01; done";
    let id = ok(daemon.drover(&["spawn", "--name", "n", "--", "sh", "-c", script]))
        .trim()
        .to_owned();
    let pid = json(&daemon, &["show", "n"])["pid"].as_u64().unwrap();
    let start = |args: &[&str]| {
        daemon
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let logs = start(&["logs", "-f", "n"]);
    let mut events = start(&["--json", "events", "-f"]);
    let event_lines = lines_of(&mut events);
    wait_for("20 lines stored", || {
        (ok(daemon.drover(&["logs", "n"])).lines().count() >= 20).then_some(())
    });
    daemon.stop();
    kill_group(pid);
    let daemon = Daemon::start(dir.path());
    let after = ok(daemon.drover(&["run", "--name", "after", "--", "true"]));
    assert_eq!(after, "");

    // logs -f ends once the new daemon reports the agent's end, having printed every stored
    // line exactly once.
    let logs = wait_output(logs);
    assert!(logs.status.success(), "{}", stderr(&logs));
    let stored = ok(daemon.drover(&["logs", "n"]));
    assert_eq!(stdout(&logs), stored);
    let expected: String = (1..=stored.lines().count())
        .map(|i| format!("{i}\n"))
        .collect();
    assert_eq!(stored, expected, "1..N, once each");
    assert_eq!(
        stderr(&logs),
        "drover: the daemon went away; waiting for it to come back\n\
         drover: the daemon is back; following on\n"
    );

    // events -f saw the agent's true end and everything after the restart, numbered
    // consecutively.
    let after_id = json(&daemon, &["show", "after"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + TIMEOUT;
    let mut seen: Vec<serde_json::Value> = Vec::new();
    while !seen
        .iter()
        .any(|e| e["agent"] == after_id.as_str() && e["kind"] == "exit")
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = event_lines.recv_timeout(left).expect("events -f goes on");
        seen.push(serde_json::from_str(&line).unwrap());
    }
    signal(events.id(), "TERM");
    let events = wait_output(events);
    let numbers: Vec<u64> = seen
        .iter()
        .map(|e| e["event_seq"].as_u64().unwrap())
        .collect();
    let first = numbers[0];
    assert_eq!(
        numbers,
        (first..first + numbers.len() as u64).collect::<Vec<_>>(),
        "consecutive, once each"
    );
    assert!(
        seen.iter().any(|e| e["agent"] == id.as_str()
            && e["kind"] == "exit"
            && e["state"] == "killed"
            && e["signal"] == 9),
        "{seen:?}"
    );
    assert!(
        stderr(&events).starts_with("drover: the daemon went away"),
        "{}",
        stderr(&events)
    );
    daemon.stop();
}
