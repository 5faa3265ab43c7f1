//! Short handles: unique among agents made in the same second, accepted wherever an agent is
//! named, and full ids in JSON.

use std::collections::BTreeSet;

use crate::common::*;

/// An agent's handle as the daemon defines it: the id's last 8 hex digits.
fn handle(id: &str) -> &str {
    &id[id.len() - 8..]
}

#[test]
fn agents_made_together_get_unique_handles_accepted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    // Made within one second: their ids share their first 8 characters.
    let ids: Vec<String> = (0..6)
        .map(|_| {
            ok(daemon.drover(&["spawn", "--", "sleep", "100"]))
                .trim()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids.iter().map(|id| &id[..8]).collect::<BTreeSet<_>>().len(),
        1,
        "same first 8 characters: {ids:?}"
    );
    let handles: BTreeSet<&str> = ids.iter().map(|id| handle(id)).collect();
    assert_eq!(handles.len(), ids.len(), "unique: {ids:?}");

    // `ls` shows each handle once, in the ID column.
    let ls = ok(daemon.drover(&["ls"]));
    let shown: BTreeSet<&str> = ls
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(shown, handles, "{ls}");

    // Every verb takes a handle; JSON carries the full id.
    let first = &ids[0];
    let shown = json(&daemon, &["show", handle(first)]);
    assert_eq!(shown["id"], first.as_str());
    assert_eq!(
        ok(daemon.drover(&["pause", handle(first)])).trim(),
        format!("paused {} (paused)", handle(first))
    );
    ok(daemon.drover(&["resume", handle(first)]));
    // The start of a handle, as docker takes the start of an id: the shortest start no other
    // handle shares (4 digits at least) names the agent; one all six share would not.
    let unique = (4..=8)
        .map(|n| &handle(first)[..n])
        .find(|start| handles.iter().filter(|h| h.starts_with(start)).count() == 1)
        .unwrap();
    assert_eq!(json(&daemon, &["show", unique])["id"], first.as_str());
    ok(daemon.drover(&["signal", "KILL", handle(first)]));
    let waited = daemon.drover(&["wait", handle(first)]);
    assert_eq!(waited.status.code(), Some(137), "{}", stderr(&waited));
    ok(daemon.drover(&["rm", handle(first)]));
    for id in &ids[1..] {
        ok(daemon.drover(&["kill", handle(id)]));
    }

    // Logs of several agents are told apart by handle; `--json` names the full id.
    let a = ok(daemon.drover(&["spawn", "--", "echo", "from-a"]))
        .trim()
        .to_owned();
    let b = ok(daemon.drover(&["spawn", "--", "echo", "from-b"]))
        .trim()
        .to_owned();
    ok(daemon.drover(&["wait", handle(&a)]));
    ok(daemon.drover(&["wait", handle(&b)]));
    assert_eq!(
        ok(daemon.drover(&["logs", handle(&a), handle(&b)])),
        format!("[{}] from-a\n[{}] from-b\n", handle(&a), handle(&b))
    );
    let lines = ok(daemon.drover(&["--json", "logs", handle(&a), handle(&b)]));
    let agents: Vec<String> = lines
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            value["agent"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(agents, vec![a.clone(), b.clone()]);
    // Events name agents by handle too.
    let events = ok(daemon.drover(&["events"]));
    assert!(
        events
            .lines()
            .any(|l| l.contains(handle(&a)) && l.contains("exit")),
        "{events}"
    );
    daemon.stop();
}
