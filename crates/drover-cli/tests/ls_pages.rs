//! `drover ls` pages through `list` transparently: agents whose specs together far exceed the
//! daemon's frame limit are all listed, once each, in creation order.

mod common;

use common::*;

#[test]
fn ls_lists_every_agent_when_their_specs_exceed_one_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start(dir.path());
    // 12 agents with specs of 1 MB each: one reply holding them all would exceed the 10 MiB
    // frame limit (a single argument may be at most 128 KiB, hence ten of 100 KB).
    const AGENTS: usize = 12;
    let arg = "a".repeat(100_000);
    let mut ids = Vec::new();
    for i in 0..AGENTS {
        let name = format!("big-{i:02}");
        let mut args = vec!["spawn", "--name", &name, "--", "true"];
        args.extend(std::iter::repeat_n(arg.as_str(), 10));
        ids.push(ok(daemon.drover(&args)).trim().to_owned());
    }
    // Newest first, as `ls` lists by default; `--reverse` for oldest first.
    ids.reverse();
    let listed = json(&daemon, &["ls"]);
    let listed = listed.as_array().expect("an array");
    let listed_ids: Vec<&str> = listed
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed_ids, ids, "every agent once, newest first");
    assert!(listed
        .iter()
        .all(|a| a["spec"]["argv"].as_array().map(Vec::len) == Some(11)));
    let quiet = ok(daemon.drover(&["ls", "-q"]));
    assert_eq!(quiet.lines().collect::<Vec<_>>(), ids);
    let table = ok(daemon.drover(&["ls"]));
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(1))
        .collect();
    let want: Vec<String> = (0..AGENTS).rev().map(|i| format!("big-{i:02}")).collect();
    assert_eq!(names, want);
    daemon.stop();
}
