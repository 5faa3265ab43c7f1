//! `--since` and `--until` as durations ago, RFC 3339 or nanoseconds, on `logs` and `events`,
//! and the same forms in HTTP's `since`.

use std::process::Command;

use crate::common::*;

#[test]
fn logs_and_events_take_durations_and_rfc3339_times() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&[
        "spawn",
        "-i",
        "--name",
        "t",
        "--",
        "sh",
        "-c",
        "echo first; read go; echo second",
    ]));
    wait_for("the first line", || {
        (ok(daemon.drover(&["logs", "t"])) == "first\n").then_some(())
    });
    let first: serde_json::Value =
        serde_json::from_str(ok(daemon.drover(&["--json", "logs", "t"])).trim()).unwrap();
    let after_first = (first["ts"].as_i64().unwrap() + 1).to_string();
    ok(daemon.drover(&["send", "t", "go"]));
    ok(daemon.drover(&["wait", "t"]));

    let logs = |args: &[&str]| {
        let mut all = vec!["logs", "t"];
        all.extend_from_slice(args);
        ok(daemon.drover(&all))
    };
    assert_eq!(logs(&["--since", "1h"]), "first\nsecond\n");
    assert_eq!(logs(&["--since", &after_first]), "second\n");
    assert_eq!(logs(&["--until", &after_first]), "first\n");
    assert_eq!(logs(&["--since", "2200-01-01T00:00:00Z"]), "");
    assert_eq!(logs(&["--until", "1h"]), "");
    assert_eq!(
        logs(&["--since", "1d", "--until", "2200-01-01T01:00:00+01:00"]),
        "first\nsecond\n"
    );
    // The RFC 3339 time `-t` prints for the second line starts there (millisecond precision).
    let stamped = logs(&["-t"]);
    let second_at = stamped.lines().nth(1).unwrap().split(' ').next().unwrap();
    assert_eq!(logs(&["--since", second_at]), "second\n");
    let bad = daemon.drover(&["logs", "t", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("is not a time"), "{}", stderr(&bad));

    let events = |args: &[&str]| {
        let mut all = vec!["events"];
        all.extend_from_slice(args);
        ok(daemon.drover(&all)).lines().count()
    };
    let every = events(&[]);
    assert!(every >= 3, "spawned, state, exit");
    assert_eq!(events(&["--since", "1h"]), every);
    assert_eq!(
        events(&["--since", "0"]),
        every,
        "a bare number is an event number"
    );
    assert_eq!(events(&["--since", "2200-01-01T00:00:00Z"]), 0);
    assert_eq!(events(&["--until", "1970-01-01T00:00:01Z"]), 0);

    // HTTP's `since` takes the same forms (over the unix socket: no token).
    let http = |since: &str| {
        let output = Command::new("curl")
            .arg("-s")
            .arg("--unix-socket")
            .arg(dir.path().join("http.sock"))
            .arg(format!(
                "http://localhost/v1/agents/t/logs?format=text&since={since}"
            ))
            .output()
            .unwrap();
        stdout(&output)
    };
    assert_eq!(http("10m"), "first\nsecond\n");
    assert_eq!(http(&after_first), "second\n");
    assert_eq!(http("2200-01-01T00:00:00Z"), "");
    assert!(http("yesterday").contains("bad_request"));
    daemon.stop();
}
