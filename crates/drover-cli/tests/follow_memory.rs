//! A follower whose output is blocked holds a bounded amount of the live stream, and loses
//! nothing of it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{ok, wait_for_within, Daemon};

/// `drover logs -f | less` with the pager not reading: the agent prints about 220 MB of
/// records meanwhile, then goes quiet (still running). The follower keeps at most 128 PUB
/// messages (`RCVHWM`); past that the daemon's queue for it (256) fills and the daemon drops
/// every later batch for it, the last ones included. Once its reader goes on, the follower
/// learns of that end from the next heartbeat's log ends (no later batch shows the jump, as the
/// agent is quiet), refills what was dropped from the store by seq and delivers every line,
/// once, in order. Before, it kept libzmq's default of 1000 messages: 181 MB for a million
/// lines.
#[test]
fn a_blocked_follower_keeps_a_bounded_live_queue_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // More than the two queues (384 messages) can hold: a message carries at most 4096
    // records (a capture read of 64 KiB holds fewer than 700 of these lines).
    let n: u64 = 2_000_000;
    // `sleep 1.5` spans a heartbeat (one each second), which reaches the idle follower before
    // `waited`: so no first heartbeat's store read comes later to find the dropped end by
    // chance. (Were it missed, the test would pass without proving the log ends, never fail.)
    let script = format!(
        "echo ready; read a; sleep 1.5; echo waited; read b; \
         awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"%d %0100d\\n\", i, 0 }}'; exec sleep 3600"
    );
    let id = ok(daemon.drover(&[
        "spawn",
        "-i",
        "--log-budget",
        "1073741824",
        "--",
        "sh",
        "-c",
        &script,
    ]))
    .trim()
    .to_owned();
    let mut follower = daemon
        .command(&["logs", "-f", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap());
    // Read in a thread, so that a follower that never delivers fails the test instead of
    // hanging it: the first two lines, then, once told, the rest.
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            let _ = first_tx.send(line);
        }
        if go_rx.recv().is_err() {
            return;
        }
        let mut numbers = Vec::with_capacity(n as usize);
        let mut line = String::new();
        while numbers.len() < n as usize {
            line.clear();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            numbers.push(
                line.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
            );
        }
        let _ = tx.send(numbers);
    });
    let next_line = || first_rx.recv_timeout(common::TIMEOUT).unwrap();
    assert_eq!(next_line(), "ready\n", "the follower is live");
    ok(daemon.drover(&["send", &id, "a"]));
    assert_eq!(next_line(), "waited\n", "the agent waited past a heartbeat");

    // Nobody reads the follower now: it blocks on its stdout while the agent writes it all.
    ok(daemon.drover(&["send", &id, "b"]));
    let last = format!("{n} ");
    // (A debug daemon on a busy machine may take longer than the common 30 s for this.)
    wait_for_within(4 * common::TIMEOUT, "every line to be stored", || {
        ok(daemon.drover(&["logs", "--tail", "1", &id]))
            .starts_with(&last)
            .then_some(())
    });

    // Read on: the agent is quiet, so only a heartbeat can reveal the dropped end.
    go_tx.send(()).unwrap();
    let numbers = rx
        .recv_timeout(common::TIMEOUT)
        .expect("the follower delivered every line of the quiet agent");
    assert!(
        numbers.iter().copied().eq(1..=n),
        "every line, once, in order ({} lines)",
        numbers.len()
    );
    // The follower's peak memory over its life so far: the queue it kept while blocked, and
    // the store pages it refilled from, one read ahead.
    let status = std::fs::read_to_string(format!("/proc/{}/status", follower.id())).unwrap();
    let peak: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(
        peak < 120 * 1024,
        "a blocked follower grew to {peak} KiB (bound: 128 messages of at most 4096 records)"
    );
    ok(daemon.drover(&["kill", &id]));
    assert!(follower.wait().unwrap().success());
    daemon.stop();
}
