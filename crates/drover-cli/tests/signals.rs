//! A daemon started with signals ignored (`drover serve &` in a script ignores SIGINT and
//! SIGQUIT; `nohup` ignores SIGHUP) does not pass that on to its agents: an agent whose stop
//! signal is SIGINT sees its stop, and one sent SIGHUP gets it. Driven through the real binary.

mod common;

use common::*;

/// A shell that ignores HUP, INT and QUIT, then becomes the daemon.
fn ignoring() -> Vec<String> {
    ["sh", "-c", "trap '' HUP INT QUIT; exec \"$@\"", "sh"]
        .map(str::to_owned)
        .to_vec()
}

fn spawn(daemon: &Daemon, extra: &[&str], script: &str) -> String {
    let mut args = vec!["spawn"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "sh", "-c", script]);
    ok(daemon.drover(&args)).trim().to_owned()
}

fn text(daemon: &Daemon, agent: &str) -> String {
    ok(daemon.drover(&["logs", agent]))
}

/// `wait` for the agent's end (`drover wait` exits with the agent's code), as JSON.
fn wait_end(daemon: &Daemon, agent: &str) -> serde_json::Value {
    let output = daemon.drover(&["--json", "wait", agent]);
    serde_json::from_str(&stdout(&output)).expect("the ended agent as JSON")
}

fn wait_ready(daemon: &Daemon, agent: &str) {
    wait_for("the agent's ready line", || {
        text(daemon, agent).starts_with("ready\n").then_some(())
    });
}

#[test]
fn agents_of_a_daemon_started_with_signals_ignored_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_wrapped(dir.path(), &[], &ignoring());
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id()))
        .expect("the daemon's status");
    assert!(
        status
            .lines()
            .any(|line| line.starts_with("SigCgt:") && !line.ends_with("0000000000000000")),
        "the daemon handles signals"
    );

    // A stop with SIGINT: the agent traps it and exits 0, well before the 20 s grace.
    let stopped = spawn(
        &daemon,
        &["--stop-signal", "INT"],
        "trap 'echo got INT; exit 0' INT; echo ready; while :; do sleep 0.05; done",
    );
    wait_ready(&daemon, &stopped);
    ok(daemon.drover(&["stop", "--grace", "20s", &stopped]));
    let ended = wait_end(&daemon, &stopped);
    assert_eq!(ended["state"], "exited", "{ended}");
    assert_eq!(ended["exit_code"], 0, "{ended}");
    assert_eq!(text(&daemon, &stopped), "ready\ngot INT\n");

    // SIGHUP and SIGQUIT by `drover signal`: each reaches the agent's trap.
    let signalled = spawn(
        &daemon,
        &[],
        "trap 'echo got HUP' HUP; trap 'echo got QUIT; exit 3' QUIT; echo ready; \
         while :; do sleep 0.05; done",
    );
    wait_ready(&daemon, &signalled);
    ok(daemon.drover(&["signal", "HUP", &signalled]));
    wait_for("the HUP trap", || {
        text(&daemon, &signalled).contains("got HUP").then_some(())
    });
    ok(daemon.drover(&["signal", "QUIT", &signalled]));
    let ended = wait_end(&daemon, &signalled);
    assert_eq!(ended["exit_code"], 3, "{ended}");
    assert_eq!(text(&daemon, &signalled), "ready\ngot HUP\ngot QUIT\n");
    daemon.stop();
}
