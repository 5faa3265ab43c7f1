//! A follower whose output is blocked holds a bounded amount of the live stream.
//!
//! In a file of its own: the peak memory of this process's waited-for children
//! (`RUSAGE_CHILDREN`) is then that of this test's `drover` commands only.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use common::{ok, Daemon};
use nix::sys::resource::{getrusage, UsageWho};

/// `drover logs -f | less` with the pager not reading: the agent prints about 130 MB of
/// records meanwhile. The follower keeps at most 128 PUB messages (`RCVHWM`); what libzmq drops
/// past that it refills from the store once its reader goes on, so every line still arrives,
/// once, in order. Before, it kept libzmq's default of 1000 messages of about 1 MiB: here it
/// grew to 181 MB.
#[test]
fn a_blocked_follower_keeps_a_bounded_live_queue_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let n: u64 = 1_000_000;
    let script = format!(
        "echo ready; read go; awk 'BEGIN {{ for (i = 1; i <= {n}; i++) printf \"%d %0100d\\n\", i, 0 }}'"
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
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap());
    let mut first = String::new();
    lines.read_line(&mut first).unwrap();
    assert_eq!(first, "ready\n", "the follower is live");

    // Nobody reads the follower now: it blocks on its stdout while the agent writes it all.
    ok(daemon.drover(&["send", &id, "go"]));
    ok(daemon.drover(&["wait", &id]));
    let mut rest = String::new();
    lines.read_to_string(&mut rest).unwrap();
    let status = follower.wait().unwrap();
    let mut stderr = String::new();
    follower
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    let numbers: Vec<u64> = rest
        .lines()
        .map(|line| line.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert!(
        numbers.iter().copied().eq(1..=n),
        "every line, once, in order ({} lines)",
        numbers.len()
    );
    // The peak over the follower's whole life (the largest of this test's waited-for
    // children; the daemon is not waited for yet): the queue it kept while blocked, and the
    // store pages it refilled from, one read ahead.
    let peak = getrusage(UsageWho::RUSAGE_CHILDREN).unwrap().max_rss();
    assert!(
        peak < 120 * 1024,
        "a blocked follower grew to {peak} KiB (bound: 128 messages of about 250 KiB here)"
    );
    daemon.stop();
}
