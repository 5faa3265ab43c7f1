//! Stdin: bounded, never blocking the caller.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use common::*;
use drover_supervisor::{Status, StdinMode, SupervisorError};

#[tokio::test]
async fn stdin_round_trips_through_cat() {
    within(async {
        let mut cmd = sh("exec cat");
        cmd.stdin = StdinMode::Pipe;
        let (handle, rec) = start(cmd);
        let mut sent = Vec::new();
        for i in 0..1000 {
            let chunk = format!("line {i} \u{e9}\n").into_bytes();
            sent.extend_from_slice(&chunk);
            // A full queue is back-pressure, not failure: let the writer task catch up.
            loop {
                match handle.write_stdin(chunk.clone()) {
                    Ok(n) => break assert_eq!(n, chunk.len()),
                    Err(SupervisorError::StdinFull) => tokio::task::yield_now().await,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        sent.extend_from_slice(b"no newline");
        handle.write_stdin(b"no newline".to_vec()).unwrap();
        handle.close_stdin().await.unwrap();
        let end = handle.wait().await;
        assert!(matches!(end, Status::Exited { code: 0, .. }), "{end:?}");
        assert_eq!(rec.bytes(drover_supervisor::Stream::Stdout), sent);
        assert!(matches!(
            handle.write_stdin(b"late".to_vec()),
            Err(SupervisorError::StdinClosed)
        ));
    })
    .await;
}

#[tokio::test]
async fn child_that_never_reads_gives_stdin_full() {
    within(async {
        let mut cmd = sh("exec sleep 100");
        cmd.stdin = StdinMode::Pipe;
        let (handle, _rec) = start(cmd);
        let chunk = vec![b'x'; 64 * 1024];
        let mut outcome = None;
        for _ in 0..10_000 {
            match handle.write_stdin(chunk.clone()) {
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => {
                    outcome = Some(e);
                    break;
                }
            }
        }
        assert!(
            matches!(outcome, Some(SupervisorError::StdinFull)),
            "{outcome:?}"
        );
        assert_eq!(handle.status().name(), "running");
        handle.kill().await.unwrap();
        handle.wait().await;
        assert!(matches!(
            handle.write_stdin(chunk),
            Err(SupervisorError::StdinClosed)
        ));
    })
    .await;
}

#[tokio::test]
async fn null_stdin_refuses_writes() {
    within(async {
        let (handle, rec) = start(sh("echo ready; exec sleep 100"));
        rec.wait_line("ready").await;
        assert!(matches!(
            handle.write_stdin(b"x".to_vec()),
            Err(SupervisorError::StdinClosed)
        ));
        assert!(matches!(
            handle.close_stdin().await,
            Err(SupervisorError::StdinClosed)
        ));
        handle.kill().await.unwrap();
        handle.wait().await;
    })
    .await;
}

#[tokio::test]
async fn child_sees_eof_after_close() {
    within(async {
        let mut cmd = sh("read line; echo \"got $line\"; read other || echo eof");
        cmd.stdin = StdinMode::Pipe;
        let (handle, rec) = start(cmd);
        handle.write_stdin(b"hello\n".to_vec()).unwrap();
        rec.wait_line("got hello").await;
        handle.close_stdin().await.unwrap();
        assert!(matches!(
            handle.wait().await,
            Status::Exited { code: 0, .. }
        ));
        assert_eq!(rec.stdout(), "got hello\neof\n");
    })
    .await;
}
