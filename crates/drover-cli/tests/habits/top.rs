//! `drover top`: each running agent's CPU and memory, measured from /proc of its group.

use crate::common::*;

#[test]
fn top_shows_a_busy_agent_busy_and_a_sleeping_one_idle() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "--name",
        "busy",
        "--",
        "sh",
        "-c",
        "while :; do :; done",
    ]));
    ok(daemon.drover(&["spawn", "--name", "idle", "--", "sleep", "100"]));
    let top = ok(daemon.drover(&["top", "-n", "1", "--interval", "1s"]));
    let mut lines = top.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "PID", "PROCS", "CPU%", "MEM", "STATE"]
    );
    let row = |name: &str| -> Vec<String> {
        top.lines()
            .find(|line| line.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("a row for {name}: {top}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let (busy, idle) = (row("busy"), row("idle"));
    assert_eq!(top.lines().count(), 3, "{top}");
    let cpu = |row: &[String]| row[4].parse::<f64>().unwrap();
    // On a shared machine the loop gets what it gets, but it gets something; sleep gets none.
    assert!(cpu(&busy) > 1.0, "{top}");
    assert_eq!(idle[4], "0.0", "{top}");
    for row in [&busy, &idle] {
        assert_eq!(row[3], "1", "one process in the group: {top}");
        assert!(row[5].ends_with('K') || row[5].ends_with('M'), "{top}");
        assert_eq!(row[6], "running");
    }
    let shown = json(&daemon, &["show", "busy"]);
    assert_eq!(busy[2], shown["pid"].to_string());
    ok(daemon.drover(&["kill", "--all"]));
    daemon.stop();
}
