//! Backend rendering: exact argv via fake CLIs on PATH, optional groups, no injection, TOML.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use drover_supervisor::{BackendError, BackendTable, Command, RenderInput, Status, StdinMode};

/// Prints its name and each argument NUL-terminated, so the argv can be compared exactly.
const FAKE_CLI: &str = "#!/bin/sh\nprintf '%s\\0' \"$(basename \"$0\")\"\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\n";

const TASK: &str = "fix the \"bug\" in 'main.rs'; $(touch PWNED) `touch PWNED` && rm -rf / *";

fn install_fakes(dir: &Path, names: &[&str]) {
    for name in names {
        let path = dir.join(name);
        std::fs::write(&path, FAKE_CLI).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Renders, runs the result with the fake bin dir first on PATH, and returns the argv it saw.
async fn run_argv(
    table: &BackendTable,
    backend: &str,
    input: &RenderInput<'_>,
    bin: &Path,
) -> Vec<String> {
    let (argv, stdin) = table.render(backend, input).unwrap();
    let mut cmd = Command::from_argv(argv);
    cmd.stdin = stdin.unwrap_or_default();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    cmd.env = vec![("PATH".into(), path)];
    cmd.cwd = Some(bin.to_path_buf());
    let (handle, rec) = start(cmd);
    let end = handle.wait().await;
    assert!(
        matches!(end, Status::Exited { code: 0, .. }),
        "{backend}: {end:?}"
    );
    let out = rec.bytes(drover_supervisor::Stream::Stdout);
    let mut words: Vec<String> = out
        .split(|&b| b == 0)
        .map(|w| String::from_utf8(w.to_vec()).unwrap())
        .collect();
    assert_eq!(words.pop().as_deref(), Some(""), "output ends with NUL");
    words
}

fn v(words: &[&str]) -> Vec<String> {
    words.iter().map(|s| (*s).to_owned()).collect()
}

/// One test spawns every fake CLI: writing executables while other test threads fork can fail
/// with ETXTBSY, so the scripts are written before any process of this binary is started.
#[tokio::test]
async fn builtins_and_custom_backends_render_exact_argv() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        install_fakes(bin, &["claude", "codex", "gemini", "opencode", "aider", "mytool"]);
        let mut table = BackendTable::builtin();
        table
            .extend_from_toml("[mytool]\nargv = [\"mytool\", \"--prompt\", \"{task}\", [\"--model\", \"{model}\"]]\nstdin = \"pipe\"\n")
            .unwrap();
        let task_only = RenderInput { task: Some(TASK), ..Default::default() };
        let all = RenderInput {
            task: Some(TASK),
            model: Some("opus 4"),
            system_prompt: Some("be brief; $(id)"),
            session: None,
            argv: &[],
        };
        let extra = ["--max-turns".to_owned(), "3".to_owned()];
        let resumed = RenderInput {
            task: Some(TASK),
            session: Some("s-1"),
            argv: &extra,
            ..Default::default()
        };

        let cases: Vec<(&str, &RenderInput, Vec<String>)> = vec![
            ("claude", &task_only, v(&["claude", "-p", TASK, "--output-format", "stream-json", "--verbose"])),
            ("claude", &all, v(&["claude", "-p", TASK, "--output-format", "stream-json", "--verbose",
                "--model", "opus 4", "--append-system-prompt", "be brief; $(id)"])),
            ("codex", &task_only, v(&["codex", "exec", "--json", "--skip-git-repo-check", TASK])),
            ("codex", &all, v(&["codex", "exec", "--json", "--skip-git-repo-check", "--model", "opus 4", TASK])),
            ("gemini", &all, v(&["gemini", "-p", TASK, "--output-format", "stream-json", "--model", "opus 4"])),
            ("claude", &resumed, v(&["claude", "-p", TASK, "--output-format", "stream-json", "--verbose",
                "--resume", "s-1", "--max-turns", "3"])),
            ("codex", &resumed, v(&["codex", "exec", "--json", "--skip-git-repo-check", "--max-turns", "3",
                "resume", "s-1", TASK])),
            ("gemini", &resumed, v(&["gemini", "-p", TASK, "--output-format", "stream-json", "--resume", "s-1",
                "--max-turns", "3"])),
            ("opencode", &resumed, v(&["opencode", "run", "--format", "json", "--session", "s-1",
                "--max-turns", "3", TASK])),
            ("mytool", &resumed, v(&["mytool", "--prompt", TASK, "--max-turns", "3"])),
            ("opencode", &task_only, v(&["opencode", "run", "--format", "json", TASK])),
            ("aider", &all, v(&["aider", "--yes", "--message", TASK, "--model", "opus 4"])),
            ("mytool", &task_only, v(&["mytool", "--prompt", TASK])),
            ("mytool", &all, v(&["mytool", "--prompt", TASK, "--model", "opus 4"])),
        ];
        for (backend, input, want) in cases {
            assert_eq!(run_argv(&table, backend, input, bin).await, want, "{backend}");
        }
        let argv = v(&["mytool", "a b", "$(touch PWNED)"]);
        let command = RenderInput { argv: &argv, ..Default::default() };
        assert_eq!(run_argv(&table, "command", &command, bin).await, argv);
        assert!(!bin.join("PWNED").exists(), "the task was interpreted by a shell");
    })
    .await;
}

#[test]
fn stdin_preferences_come_from_the_template() {
    let mut table = BackendTable::builtin();
    table
        .extend_from_toml("[mytool]\nargv = [\"mytool\"]\nstdin = \"pipe\"\n")
        .unwrap();
    let input = RenderInput {
        task: Some("t"),
        ..Default::default()
    };
    assert_eq!(
        table.render("claude", &input).unwrap().1,
        Some(StdinMode::Null)
    );
    // codex and opencode read a stdin that is not a terminal; gemini does not care.
    for cli in ["codex", "opencode"] {
        assert_eq!(
            table.render(cli, &input).unwrap().1,
            Some(StdinMode::Null),
            "{cli}"
        );
    }
    assert_eq!(table.render("gemini", &input).unwrap().1, None);
    assert_eq!(
        table.render("mytool", &input).unwrap().1,
        Some(StdinMode::Pipe)
    );
}

#[test]
fn missing_values_and_unknown_backends_are_errors() {
    let table = BackendTable::builtin();
    let none = RenderInput::default();
    match table.render("claude", &none) {
        Err(BackendError::Missing { backend, field }) => {
            assert_eq!((backend.as_str(), field), ("claude", "task"))
        }
        other => panic!("{other:?}"),
    }
    match table.render("command", &none) {
        Err(BackendError::Missing { field, .. }) => assert_eq!(field, "argv"),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(table.render("nope", &none), Err(BackendError::Unknown { backend }) if backend == "nope")
    );
}

#[test]
fn toml_overrides_builtins_and_accepts_the_wrapper_table() {
    let mut table = BackendTable::builtin();
    table
        .extend_from_toml(
            "[backends.claude]\nargv = [\"my-claude\", \"{task}\", [\"-m\", \"{model}\"]]\n",
        )
        .unwrap();
    let input = RenderInput {
        task: Some("t {model} {other}"),
        ..Default::default()
    };
    let (argv, stdin) = table.render("claude", &input).unwrap();
    assert_eq!(
        argv,
        v(&["my-claude", "t {model} {other}"]),
        "values are never re-substituted"
    );
    assert_eq!(stdin, None);
    assert_eq!(
        table.names().collect::<Vec<_>>(),
        ["aider", "claude", "codex", "command", "gemini", "opencode"]
    );
    assert!(table.extend_from_toml("[broken]\nargv = 3\n").is_err());
    assert!(table.extend_from_toml("not toml = = =").is_err());
}

#[test]
fn literal_braces_pass_through() {
    let mut table = BackendTable::builtin();
    table
        .extend_from_toml("[j]\nargv = [\"tool\", '{\"k\": \"{task}\"}', \"{unknown}\"]\n")
        .unwrap();
    let input = RenderInput {
        task: Some("v"),
        ..Default::default()
    };
    assert_eq!(
        table.render("j", &input).unwrap().0,
        v(&["tool", "{\"k\": \"v\"}", "{unknown}"])
    );
}
