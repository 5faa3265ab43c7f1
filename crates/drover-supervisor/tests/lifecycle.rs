//! Lifecycle with real processes: stop with grace, pause/resume, group kill, exit reporting.

#![allow(clippy::unwrap_used)] // tests may unwrap (workspace rule)

mod common;

use std::time::{Duration, Instant};

use common::*;
use drover_supervisor::{parse_signal, Status, SupervisorError};

#[tokio::test]
async fn stop_kills_only_after_grace_when_term_is_trapped() {
    within(async {
        let (handle, rec) = start(sh(
            "trap 'echo got-term' TERM; echo ready; while :; do sleep 0.05; done",
        ));
        rec.wait_line("ready").await;
        let grace = Duration::from_millis(700);
        let asked = Instant::now();
        let stopping = handle.stop(grace).await.unwrap();
        assert_eq!(stopping.name(), "stopping");
        rec.wait_line("got-term").await;
        assert_eq!(
            handle.status().name(),
            "stopping",
            "trapped TERM must not end it"
        );
        let end = handle.wait().await;
        assert!(asked.elapsed() >= grace, "killed before the grace ended");
        assert!(matches!(end, Status::Killed { signal: 9, .. }), "{end:?}");
        assert_eq!(rec.status_names(), ["running", "stopping", "killed"]);
    })
    .await;
}

#[tokio::test]
async fn stop_of_a_stopping_agent_shortens_the_grace() {
    within(async {
        let (handle, rec) = start(sh("trap '' TERM; echo ready; while :; do sleep 0.05; done"));
        rec.wait_line("ready").await;
        let asked = Instant::now();
        handle.stop(Duration::from_secs(600)).await.unwrap();
        let again = handle.stop(Duration::from_millis(100)).await.unwrap();
        assert_eq!(again.name(), "stopping");
        let end = handle.wait().await;
        assert!(matches!(end, Status::Killed { signal: 9, .. }), "{end:?}");
        assert!(asked.elapsed() < Duration::from_secs(20));
        assert_eq!(rec.status_names(), ["running", "stopping", "killed"]);
    })
    .await;
}

#[tokio::test]
async fn pause_stops_the_whole_group_and_resume_continues_it() {
    within(async {
        let (handle, rec) = start(sh("sleep 100 & echo ready; wait"));
        rec.wait_line("ready").await;
        let pid = handle.status().pid().unwrap();
        wait_for("two group members", || group_members(pid).len() >= 2).await;
        let members = group_members(pid);

        let paused = handle.pause().await.unwrap();
        assert_eq!(paused.name(), "paused");
        wait_for("every member stopped", || {
            members
                .iter()
                .all(|&p| proc_stat(p).is_some_and(|(s, _)| s == 'T'))
        })
        .await;

        let running = handle.resume().await.unwrap();
        assert_eq!(running.name(), "running");
        wait_for("every member running again", || {
            members
                .iter()
                .all(|&p| proc_stat(p).is_some_and(|(s, _)| s != 'T'))
        })
        .await;

        handle.kill().await.unwrap();
        let end = handle.wait().await;
        assert!(matches!(end, Status::Killed { signal: 9, .. }), "{end:?}");
        assert_eq!(
            rec.status_names(),
            ["running", "paused", "running", "killed"]
        );
    })
    .await;
}

#[tokio::test]
async fn stop_from_paused_terminates() {
    within(async {
        let (handle, rec) = start(sh("echo ready; exec sleep 100"));
        rec.wait_line("ready").await;
        handle.pause().await.unwrap();
        handle.stop(Duration::from_secs(20)).await.unwrap();
        let end = handle.wait().await;
        assert!(matches!(end, Status::Killed { signal: 15, .. }), "{end:?}");
        assert_eq!(
            rec.status_names(),
            ["running", "paused", "stopping", "killed"]
        );
    })
    .await;
}

#[tokio::test]
async fn grandchildren_die_with_the_group_on_kill() {
    within(async {
        let (handle, rec) = start(sh("sleep 100 & echo $!; echo ready; wait"));
        rec.wait_line("ready").await;
        let grandchild: u32 = rec.stdout().lines().next().unwrap().parse().unwrap();
        assert!(is_alive(grandchild));
        handle.kill().await.unwrap();
        handle.wait().await;
        wait_for("grandchild gone", || !is_alive(grandchild)).await;
    })
    .await;
}

#[tokio::test]
async fn grandchild_ignoring_term_dies_when_the_leader_exits_on_stop() {
    within(async {
        // The grandchild ignores SIGTERM; the leader dies of it. The reap SIGKILLs the rest.
        let (handle, rec) = start(sh(
            "(trap '' TERM; exec sleep 100) & echo $!; echo ready; wait",
        ));
        rec.wait_line("ready").await;
        let grandchild: u32 = rec.stdout().lines().next().unwrap().parse().unwrap();
        handle.stop(Duration::from_secs(600)).await.unwrap();
        let end = handle.wait().await;
        assert!(matches!(end, Status::Killed { signal: 15, .. }), "{end:?}");
        wait_for("grandchild gone", || !is_alive(grandchild)).await;
    })
    .await;
}

#[tokio::test]
async fn exit_code_is_recorded() {
    within(async {
        let (handle, rec) = start(sh("echo bye; exit 3"));
        let end = handle.wait().await;
        let Status::Exited {
            code,
            started_at,
            ended_at,
        } = end
        else {
            panic!("{end:?}")
        };
        assert_eq!(code, 3);
        assert!(ended_at >= started_at && started_at > 0);
        assert_eq!(rec.stdout(), "bye\n");
        assert_eq!(rec.status_names(), ["running", "exited"]);
    })
    .await;
}

#[tokio::test]
async fn death_by_signal_is_recorded() {
    within(async {
        let (handle, _rec) = start(sh("kill -USR1 $$"));
        let end = handle.wait().await;
        assert!(
            matches!(end, Status::Killed { signal, .. } if signal == libc::SIGUSR1),
            "{end:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn signal_goes_to_the_group() {
    within(async {
        let (handle, rec) = start(sh("echo ready; exec sleep 100"));
        rec.wait_line("ready").await;
        let usr2 = parse_signal("sigusr2").unwrap();
        assert_eq!(handle.signal(usr2).await.unwrap().name(), "running");
        let end = handle.wait().await;
        assert!(
            matches!(end, Status::Killed { signal, .. } if signal == usr2),
            "{end:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn max_runtime_stops_gracefully() {
    within(async {
        let rec = Recorder::new();
        let config = drover_supervisor::SupervisorConfig {
            max_runtime: Some(Duration::from_millis(200)),
            ..Default::default()
        };
        let handle = drover_supervisor::spawn(sh("exec sleep 100"), config, rec.clone());
        let end = handle.wait().await;
        assert!(matches!(end, Status::Killed { signal: 15, .. }), "{end:?}");
        assert_eq!(rec.status_names(), ["running", "stopping", "killed"]);
    })
    .await;
}

#[tokio::test]
async fn dropping_every_handle_kills_the_group() {
    within(async {
        let (handle, rec) = start(sh("sleep 100 & echo $!; echo ready; wait"));
        rec.wait_line("ready").await;
        let grandchild: u32 = rec.stdout().lines().next().unwrap().parse().unwrap();
        let mut watch = handle.watch();
        drop(handle);
        let end = watch.wait_for(Status::is_terminal).await.unwrap().clone();
        assert!(matches!(end, Status::Killed { signal: 9, .. }), "{end:?}");
        wait_for("grandchild gone", || !is_alive(grandchild)).await;
    })
    .await;
}

fn assert_invalid(err: SupervisorError, want_op: &str, want_state: &str) {
    match err {
        SupervisorError::InvalidState { op, state } => {
            assert_eq!((op, state), (want_op, want_state));
        }
        other => panic!("expected InvalidState, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_transitions_are_typed_errors_and_change_nothing() {
    within(async {
        let (handle, rec) = start(sh("echo ready; exec sleep 100"));
        rec.wait_line("ready").await;
        assert_invalid(handle.resume().await.unwrap_err(), "resume", "running");
        assert_eq!(handle.status().name(), "running");
        handle.pause().await.unwrap();
        assert_invalid(handle.pause().await.unwrap_err(), "pause", "paused");
        assert_eq!(handle.status().name(), "paused");
        assert!(matches!(
            handle.signal(999).await,
            Err(SupervisorError::InvalidSignal(999))
        ));
        assert_eq!(handle.status().name(), "paused");
        handle.kill().await.unwrap();
        let end = handle.wait().await;
        assert_eq!(end.name(), "killed");
        assert_invalid(handle.pause().await.unwrap_err(), "pause", "killed");
        assert_invalid(handle.resume().await.unwrap_err(), "resume", "killed");
        assert_invalid(
            handle.stop(Duration::ZERO).await.unwrap_err(),
            "stop",
            "killed",
        );
        assert_invalid(handle.kill().await.unwrap_err(), "kill", "killed");
        assert_invalid(handle.signal(15).await.unwrap_err(), "signal", "killed");
        assert_eq!(handle.status(), end);
        assert_eq!(rec.status_names(), ["running", "paused", "killed"]);
    })
    .await;
}
