//! Which executable `drover serve` runs holders with: a `drover-holder` beside `drover` when it
//! holds the same holder code (`drover-holder build` prints the same fingerprint as `drover
//! holder build`), else `drover` itself (`drover holder ...`); a stale one, one that fails to
//! answer and one that does not answer within 5 s are never used.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

/// A directory holding a link to the `drover` under test and a `drover-holder` script that
/// answers `build` by running the shell code `answer` and otherwise notes its arguments in
/// `calls`, then runs `drover holder` with them.
fn layout(dir: &Path, answer: &str) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let drover = bin.join("drover");
    if !drover.exists() && std::fs::hard_link(drover_bin(), &drover).is_err() {
        std::fs::copy(drover_bin(), &drover).expect("copy drover");
    }
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = build ]; then {answer}; fi\n\
         echo \"$*\" >> '{calls}'\nexec '{drover}' holder \"$@\"\n",
        calls = dir.join("calls").display(),
        drover = drover_bin(),
    );
    let holder = bin.join("drover-holder");
    std::fs::write(&holder, script).expect("write drover-holder");
    std::fs::set_permissions(&holder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Start the `drover` in `dir/bin` on `state`, spawn an agent and wait until it runs.
fn run_one(dir: &Path, state: &Path) -> Daemon {
    let drover = dir.join("bin/drover");
    // The wrapper drops the `drover` under test that `start_wrapped` appends and runs the link.
    let wrapper = [
        "sh".to_owned(),
        "-c".to_owned(),
        format!("shift; exec '{}' \"$@\"", drover.display()),
        "sh".to_owned(),
    ];
    let daemon = Daemon::start_wrapped(state, &[], &wrapper);
    ok(daemon.drover(&["spawn", "--name", "a", "--", "sleep", "100"]));
    wait_for("the agent to run", || {
        (json(&daemon, &["show", "a"])["state"] == "running").then_some(())
    });
    daemon
}

#[test]
fn serve_runs_holders_with_the_drover_holder_beside_it_only_if_it_is_of_the_same_build() {
    let out = std::process::Command::new(drover_bin())
        .args(["holder", "build"])
        .output()
        .expect("drover holder build");
    assert!(out.status.success());
    let build = String::from_utf8(out.stdout).expect("utf-8");
    let build = build.trim();
    assert!(build.starts_with(env!("CARGO_PKG_VERSION")), "{build}");

    // Same build: the daemon's spawner is the drover-holder beside it.
    let dir = tempfile::tempdir().expect("tempdir");
    layout(dir.path(), &format!("echo '{build}'; exit 0"));
    let daemon = run_one(dir.path(), &dir.path().join("state"));
    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    assert_eq!(calls, "spawner\n");
    ok(daemon.drover(&["kill", "a"]));
    daemon.stop();

    // Another build, the right build with a failing exit, and no answer within 5 s (the
    // daemon kills it and goes on): never run; holders are `drover holder`, and the agent runs
    // as well.
    for answer in [
        "echo '0.0.0-0000000000000000'; exit 0".to_owned(),
        format!("echo '{build}'; exit 3"),
        "exec sleep 3600".to_owned(),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        layout(dir.path(), &answer);
        let asked = std::time::Instant::now();
        let daemon = run_one(dir.path(), &dir.path().join("state"));
        // Without the 5 s limit the silent one would hold the daemon's start for an hour.
        assert!(asked.elapsed() < TIMEOUT, "{answer}: {:?}", asked.elapsed());
        assert!(!dir.path().join("calls").exists(), "{answer}");
        ok(daemon.drover(&["kill", "a"]));
        daemon.stop();
    }
}
