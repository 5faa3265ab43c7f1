//! `run` and `spawn` act where the user is: this directory, this PATH, this stdin; and usage
//! errors exit as documented.

use std::os::unix::fs::PermissionsExt;

use crate::common::*;

#[test]
fn agents_start_in_the_callers_directory_and_find_programs_on_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let work = tempfile::tempdir().unwrap();
    let work_path = work.path().canonicalize().unwrap();
    std::fs::create_dir(work_path.join("sub")).unwrap();
    // A program only on the caller's PATH, never on the daemon's.
    let bin = work_path.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let program = bin.join("drover-test-greeter");
    std::fs::write(&program, "#!/bin/sh\necho \"found FOO=$FOO\"\n").unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let drover_here = |args: &[&str]| {
        let mut command = daemon.command(args);
        command
            .current_dir(&work_path)
            .env("PATH", &path)
            .env("FOO", "bar");
        output_of(command)
    };

    let pwd = format!("{}\n", work_path.display());
    assert_eq!(ok(drover_here(&["run", "--", "pwd"])), pwd);
    let sub = format!("{}\n", work_path.join("sub").display());
    assert_eq!(ok(drover_here(&["run", "--cwd", "sub", "--", "pwd"])), sub);
    // PATH goes with the spawn, the rest of the environment only when asked.
    assert_eq!(
        ok(drover_here(&["run", "--", "drover-test-greeter"])),
        "found FOO=\n"
    );
    assert_eq!(
        ok(drover_here(&[
            "run",
            "-e",
            "FOO",
            "--",
            "drover-test-greeter"
        ])),
        "found FOO=bar\n"
    );
    assert_eq!(
        ok(drover_here(&[
            "run",
            "-e",
            "FOO=x",
            "--",
            "drover-test-greeter"
        ])),
        "found FOO=x\n"
    );
    assert_eq!(
        ok(drover_here(&[
            "run",
            "--env-all",
            "--",
            "drover-test-greeter"
        ])),
        "found FOO=bar\n"
    );
    let id = ok(drover_here(&["spawn", "--", "pwd"])).trim().to_owned();
    let shown = json(&daemon, &["show", &id]);
    assert_eq!(shown["spec"]["cwd"], work_path.to_str().unwrap());
    assert_eq!(shown["spec"]["env"]["PATH"], path.as_str());
    daemon.stop();
}

#[test]
fn run_i_forwards_stdin_and_its_end_and_exits_with_the_agents_code() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let echoed = daemon.drover_with_stdin(&["run", "-i", "--", "cat"], Some(b"x\n"));
    assert_eq!(stdout(&echoed), "x\n");
    assert_eq!(echoed.status.code(), Some(0), "{}", stderr(&echoed));
    // More than one chunk, and the agent's own exit code.
    let input: String = (1..=20_000).map(|i| format!("line {i}\n")).collect();
    let counted = daemon.drover_with_stdin(
        &["run", "-i", "--", "sh", "-c", "wc -l; exit 7"],
        Some(input.as_bytes()),
    );
    assert_eq!(stdout(&counted).trim(), "20000");
    assert_eq!(counted.status.code(), Some(7), "{}", stderr(&counted));
    daemon.stop();
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    for args in [
        &["ls", "--no-such-flag"][..],
        &["no-such-command"],
        &[],
        &["stop", "--grace", "5y", "x"],
    ] {
        let output = std::process::Command::new(drover_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).is_empty(), "{args:?}");
    }
    for args in [&["--help"][..], &["ls", "--help"], &["--version"]] {
        let output = std::process::Command::new(drover_bin())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{args:?}");
        assert!(!stdout(&output).is_empty(), "{args:?}");
    }
}

/// A reader that closes the pipe early (`drover ls --json | head -1`) is not an error, for JSON
/// output too (serde_json wraps the `EPIPE`): exit 0 and nothing on stderr.
#[test]
fn a_closed_stdout_is_success_for_json_output_too() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    for _ in 0..3 {
        ok(daemon.drover(&["run", "--", "true"]));
    }
    for args in ["--json ls", "ls"] {
        // `true` exits without reading: every write of drover finds the pipe closed.
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("set -o pipefail; \"$0\" {args} | true"))
            .arg(drover_bin())
            .env("DROVER_CONTROL", &daemon.control)
            .env("DROVER_CONFIG_DIR", dir.path().join("no-config"))
            .env_remove("DROVER_CONTEXT")
            .output()
            .unwrap();
        assert!(output.status.success(), "{args}: {}", stderr(&output));
        assert_eq!(stderr(&output), "", "{args}");
    }
    daemon.stop();
}
