//! Selectors, verbs on several agents reported one line each, `prune`, `wait --any`, and
//! `ls` like its peers.

use crate::common::*;

fn spawn(daemon: &Daemon, name: &str, labels: &[&str], argv: &[&str]) -> String {
    let mut args = vec!["spawn", "--name", name];
    for label in labels {
        args.extend(["--label", label]);
    }
    args.push("--");
    args.extend_from_slice(argv);
    ok(daemon.drover(&args)).trim().to_owned()
}

/// Names in `ls`'s NAME column, top to bottom.
fn names(ls: &str) -> Vec<String> {
    ls.lines()
        .skip(1)
        .map(|line| line.split_whitespace().nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn selectors_pick_agents_for_every_verb_and_each_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    spawn(&daemon, "w1", &["tier=web", "team=a"], &["sleep", "100"]);
    spawn(&daemon, "w2", &["tier=web", "team=b"], &["sleep", "100"]);
    spawn(&daemon, "d1", &["tier=db", "team=a"], &["sleep", "100"]);
    spawn(&daemon, "x", &[], &["sleep", "100"]);

    let ls = |selector: &str| names(&ok(daemon.drover(&["ls", "-l", selector])));
    assert_eq!(ls("tier=web"), ["w2", "w1"], "newest first");
    assert_eq!(ls("tier!=web"), ["x", "d1"]);
    assert_eq!(ls("team in (a, c)"), ["d1", "w1"]);
    assert_eq!(ls("team notin (a)"), ["x", "w2"]);
    assert_eq!(ls("tier"), ["d1", "w2", "w1"]);
    assert_eq!(ls("!tier"), ["x"]);
    assert_eq!(ls("tier=web,team=a"), ["w1"]);
    for bad in ["team in (a", "tier=a=b", "=web", "a b"] {
        let refused = daemon.drover(&["ls", "-l", bad]);
        assert_eq!(refused.status.code(), Some(1), "{bad}");
        assert!(
            stderr(&refused).contains("invalid selector"),
            "{bad}: {}",
            stderr(&refused)
        );
    }

    // Several verbs, one line per agent, through `batch`.
    assert_eq!(
        ok(daemon.drover(&["pause", "-l", "tier=web"])),
        "paused w1 (paused)\npaused w2 (paused)\n"
    );
    assert_eq!(
        ok(daemon.drover(&["resume", "w1", "w2"])),
        "resumed w1 (running)\nresumed w2 (running)\n"
    );
    assert_eq!(
        ok(daemon.drover(&["signal", "18", "-l", "team=a"])),
        "sent CONT to w1 (running)\nsent CONT to d1 (running)\n"
    );
    // One missing agent fails alone, and the exit status is its code.
    let mixed = daemon.drover(&["stop", "--grace", "1s", "w1", "nope", "d1"]);
    assert_eq!(
        stdout(&mixed),
        "stopped w1 (killed)\nstopped d1 (killed)\n",
        "{}",
        stderr(&mixed)
    );
    assert!(
        stderr(&mixed).starts_with("drover: nope: not_found:"),
        "{}",
        stderr(&mixed)
    );
    assert_eq!(mixed.status.code(), Some(3));
    let results = json(&daemon, &["kill", "--all"]);
    let killed: Vec<&str> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(killed, ["w2", "x"]);
    assert_eq!(results[0]["agent"].as_str().unwrap().len(), 36, "full ids");
    let waited = daemon.drover(&["wait", "--all"]);
    assert_eq!(
        waited.status.code(),
        Some(0),
        "nothing live: {}",
        stderr(&waited)
    );
    assert_eq!(
        ok(daemon.drover(&["rm", "-l", "tier=web"])),
        "removed w1\nremoved w2\n"
    );
    assert_eq!(names(&ok(daemon.drover(&["ls"]))), ["x", "d1"]);
    daemon.stop();
}
