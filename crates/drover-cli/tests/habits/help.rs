//! Help with examples, completions and a man page from the clap definitions, `NO_COLOR`, and
//! errors and signals printed for people (never Rust `Debug`).

use std::process::Command;

use crate::common::*;

const COMMANDS: [&str; 23] = [
    "serve",
    "spawn",
    "run",
    "ls",
    "show",
    "logs",
    "pause",
    "resume",
    "stop",
    "kill",
    "signal",
    "send",
    "wait",
    "rm",
    "prune",
    "top",
    "events",
    "health",
    "stats",
    "context",
    "auth",
    "completions",
    "man",
];

fn drover(args: &[&str]) -> std::process::Output {
    Command::new(drover_bin()).args(args).output().unwrap()
}

#[test]
fn every_command_has_examples_and_completions_and_a_man_page_are_generated() {
    assert!(ok(drover(&["--help"])).contains("Examples:\n  drover "));
    for command in COMMANDS {
        let help = ok(drover(&[command, "--help"]));
        assert!(help.contains("Examples:\n  drover "), "{command}: {help}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(drover(&["completions", shell]));
        assert!(script.contains("prune"), "{shell}");
        assert!(script.contains("selector"), "{shell}");
    }
    let bad = drover(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(1));
    let man = ok(drover(&["man"]));
    assert!(man.starts_with(".ie \\n(.g .ds Aq"), "{}", &man[..80]);
    assert!(man.contains(".TH drover 1"), "roff with a title");
    assert!(man.contains("drover\\-prune"), "subcommands listed");
}

#[test]
fn errors_and_signals_read_as_words_and_no_color_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    ok(daemon.drover(&["spawn", "--name", "s", "--", "sleep", "100"]));
    let unknown = daemon.drover(&["signal", "FOO", "s"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert_eq!(
        stderr(&unknown),
        "drover: s: bad_request: unknown signal \"FOO\"\n"
    );
    let stopper = daemon.drover(&["signal", "20", "s"]);
    assert_eq!(
        stderr(&stopper),
        "drover: s: bad_request: SIGTSTP stops the agent without telling Drover; use pause\n"
    );
    let empty = daemon.drover(&["spawn"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(
        stderr(&empty).contains("backend \"command\" needs a value for argv"),
        "{}",
        stderr(&empty)
    );

    // A timeout's stop reads as a timeout.
    let timed = daemon.drover(&[
        "run",
        "--name",
        "t",
        "--timeout",
        "300ms",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(timed.status.code(), Some(143), "{}", stderr(&timed));
    let show = ok(daemon.drover(&["show", "t"]));
    assert!(show.contains("status   timed out (TERM)"), "{show}");

    // Colour only on a terminal, and never with NO_COLOR.
    let on_a_terminal = |no_color: Option<&str>| {
        let mut command = daemon.command(&[]);
        command.args(["-qec", &format!("{} ls", drover_bin()), "/dev/null"]);
        let mut script = Command::new("script");
        script.args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => script.env(key, value),
                None => script.env_remove(key),
            };
        }
        match no_color {
            Some(value) => script.env("NO_COLOR", value),
            None => script.env_remove("NO_COLOR"),
        };
        ok(output_of(script))
    };
    assert!(on_a_terminal(None).contains("\x1b[32mrunning\x1b[0m"));
    assert!(!on_a_terminal(Some("1")).contains('\x1b'));
    daemon.stop();
}
