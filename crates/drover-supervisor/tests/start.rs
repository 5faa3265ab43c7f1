//! Spawn failures become FailedToStart with a reason naming what is wrong.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use drover_supervisor::{Command, Status, StdinMode, SupervisorError};

fn command(program: &str) -> Command {
    Command {
        program: program.into(),
        args: vec![],
        env: vec![],
        cwd: None,
        stdin: StdinMode::Pipe,
    }
}

async fn failure(command: Command) -> String {
    let (handle, rec) = start(command);
    let status = handle.status();
    assert_eq!(handle.wait().await, status);
    assert_eq!(
        rec.statuses(),
        std::slice::from_ref(&status),
        "observer sees exactly FailedToStart"
    );
    assert!(rec.records.lock().unwrap().is_empty());
    assert!(matches!(
        handle.write_stdin(b"x".to_vec()),
        Err(SupervisorError::StdinClosed)
    ));
    assert!(matches!(
        handle.pause().await,
        Err(SupervisorError::InvalidState {
            op: "pause",
            state: "failed_to_start"
        })
    ));
    match status {
        Status::FailedToStart { error, ended_at } => {
            assert!(ended_at > 0);
            error
        }
        other => panic!("expected FailedToStart, got {other:?}"),
    }
}

#[tokio::test]
async fn missing_program_is_named() {
    within(async {
        let error = failure(command("drover-no-such-program-4711")).await;
        assert!(error.contains("drover-no-such-program-4711"), "{error}");
        assert!(error.contains("not found"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn missing_program_path_is_named() {
    within(async {
        let error = failure(command("/nonexistent/dir/tool")).await;
        assert!(
            error.contains("/nonexistent/dir/tool") && error.contains("does not exist"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn non_executable_file_is_named() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.txt");
        std::fs::write(&path, "echo hi\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let program = path.to_str().unwrap();
        let error = failure(command(program)).await;
        assert!(
            error.contains(program) && error.contains("not executable"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn missing_cwd_is_named() {
    within(async {
        let mut cmd = command("/bin/true");
        cmd.cwd = Some("/nonexistent/drover-cwd".into());
        let error = failure(cmd).await;
        assert!(
            error.contains("/nonexistent/drover-cwd") && error.contains("working directory"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test]
async fn empty_program_fails_to_start() {
    within(async {
        let error = failure(command("")).await;
        assert!(error.contains("no program"), "{error}");
    })
    .await;
}

#[tokio::test]
async fn env_overrides_and_cwd_apply() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = sh("echo \"$DROVER_TEST_VALUE\"; pwd; test -n \"$PATH\" && echo has-path");
        cmd.env = vec![("DROVER_TEST_VALUE".into(), "over ridden".into())];
        cmd.cwd = Some(dir.path().to_path_buf());
        let (handle, rec) = start(cmd);
        assert!(matches!(
            handle.wait().await,
            Status::Exited { code: 0, .. }
        ));
        let cwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            rec.stdout(),
            format!("over ridden\n{}\nhas-path\n", cwd.display())
        );
    })
    .await;
}
