//! The lifecycle ops of the control protocol (spawn, pause, resume, stop, kill, signal, stdin,
//! wait, logs), through the real daemon and the real client.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use drover_proto::op::{AgentRef, ReadLogsArgs, SignalSpec};
use drover_proto::{AgentSpec, AgentState, ErrorCode, Seq, StdinMode, StreamKind};

#[tokio::test]
async fn spawn_run_and_read_logs_exactly() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client
            .spawn(sh(
                "echo one; echo two >&2; sleep 0.05; printf 'a\\377b\\n'; exit 7",
            ))
            .await
            .unwrap();
        assert!(matches!(
            agent.state(),
            AgentState::Running | AgentState::Exited
        ));
        assert!(agent.status.pid().is_some() || agent.state() == AgentState::Exited);
        let done = client.wait(&agent.id.to_string(), None).await.unwrap();
        assert_eq!(done.state(), AgentState::Exited);
        assert_eq!(done.status.exit_code(), Some(7));
        assert!(done.status.ended_at() >= done.status.started_at());
        let records = all_records(&client, &agent).await;
        let seqs: Vec<u64> = records.iter().map(|r| r.seq.0).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        let data: Vec<&[u8]> = records.iter().map(|r| r.data.as_slice()).collect();
        assert!(data.contains(&&b"one\n"[..]));
        assert!(data.contains(&&b"two\n"[..]));
        assert_eq!(records[2].data, b"a\xffb\n");
        let stderr: Vec<_> = records
            .iter()
            .filter(|r| r.stream == StreamKind::Stderr)
            .collect();
        assert_eq!(stderr.len(), 1);
        assert_eq!(stderr[0].data, b"two\n");

        // Filters: stream, tail, since_seq, limit; reading never consumes.
        let id = AgentRef::new(agent.id.to_string());
        let mut args = ReadLogsArgs::new(id.clone());
        args.stream = Some(StreamKind::Stdout);
        let read = client.read_logs(args).await.unwrap();
        assert_eq!(read.records.len(), 2);
        let mut args = ReadLogsArgs::new(id.clone());
        args.tail = Some(1);
        let read = client.read_logs(args).await.unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].seq, Seq(3));
        assert_eq!(read.next_seq, Seq(4));
        let mut args = ReadLogsArgs::new(id.clone());
        args.since_seq = Some(Seq(2));
        args.limit = Some(1);
        let read = client.read_logs(args).await.unwrap();
        assert_eq!(read.records.len(), 1);
        assert_eq!(read.records[0].seq, Seq(2));
        assert_eq!(read.next_seq, Seq(3));
        assert!(!read.truncated);
        assert_eq!(all_records(&client, &agent).await.len(), 3);
        // Past the end: nothing, the position kept, and the true end.
        let mut args = ReadLogsArgs::new(id.clone());
        args.since_seq = Some(Seq(50));
        let read = client.read_logs(args).await.unwrap();
        assert!(read.records.is_empty());
        assert_eq!((read.next_seq, read.end_seq), (Seq(50), Seq(4)));

        // The last 0 records: just the log's extent and sizes. 12 bytes of output; on disk
        // at least a segment header and one block header more (how many blocks depends on
        // how the capture batched the lines).
        let mut args = ReadLogsArgs::new(id.clone());
        args.tail = Some(0);
        let read = client.read_logs(args).await.unwrap();
        assert!(read.records.is_empty());
        assert_eq!((read.first_seq, read.end_seq), (Seq(1), Seq(4)));
        assert_eq!(read.output_bytes, 12);
        assert!(read.disk_bytes >= 12 + 16 + 36, "{}", read.disk_bytes);
        assert_eq!(client.stats().await.unwrap().log_output_bytes, 12);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn failed_to_start_is_reported_with_its_reason() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client
            .spawn(AgentSpec {
                argv: vec!["/nonexistent/program".into()],
                ..AgentSpec::default()
            })
            .await
            .unwrap();
        assert_eq!(agent.state(), AgentState::FailedToStart);
        assert!(agent
            .status
            .error()
            .unwrap()
            .contains("/nonexistent/program"));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn pause_resume_and_invalid_transitions() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("sleep 100")).await.unwrap();
        let id = agent.id.to_string();
        assert_eq!(code(client.resume(&id).await), ErrorCode::InvalidState);
        assert_eq!(client.pause(&id).await.unwrap().state(), AgentState::Paused);
        assert_eq!(code(client.pause(&id).await), ErrorCode::InvalidState);
        assert_eq!(client.get(&id).await.unwrap().state(), AgentState::Paused);
        assert_eq!(
            client.resume(&id).await.unwrap().state(),
            AgentState::Running
        );
        let killed = client.kill(&id).await.unwrap();
        assert!(matches!(
            killed.state(),
            AgentState::Running | AgentState::Killed
        ));
        let done = client.wait(&id, None).await.unwrap();
        assert_eq!(done.state(), AgentState::Killed);
        assert_eq!(done.status.signal(), Some(9));
        for result in [
            client.pause(&id).await,
            client.resume(&id).await,
            client.kill(&id).await,
            client.stop(&id, None).await,
            client.signal(&id, SignalSpec::Name("TERM".into())).await,
        ] {
            assert_eq!(code(result), ErrorCode::InvalidState);
        }
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_grace() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client
            .spawn(sh(
                "trap 'echo got-term' TERM; echo ready; while :; do sleep 0.05; done",
            ))
            .await
            .unwrap();
        wait_ready(&client, &agent).await;
        let id = agent.id.to_string();
        let stopping = client
            .stop(&id, Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert_eq!(stopping.state(), AgentState::Stopping);
        let done = client.wait(&id, None).await.unwrap();
        assert_eq!(done.state(), AgentState::Killed);
        assert_eq!(done.status.signal(), Some(9));
        let records = all_records(&client, &agent).await;
        assert!(text(&records).contains("got-term"));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn signals_by_name_and_number() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client
            .spawn(sh(
                "trap 'echo usr1; exit 4' USR1; echo ready; while :; do sleep 0.05; done",
            ))
            .await
            .unwrap();
        wait_ready(&client, &agent).await;
        let id = agent.id.to_string();
        assert_eq!(
            code(client.signal(&id, SignalSpec::Name("NOPE".into())).await),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(client.signal(&id, SignalSpec::Number(999)).await),
            ErrorCode::BadRequest
        );
        // Job-control stops would stop the group behind the state machine's back.
        assert_eq!(
            code(client.signal(&id, SignalSpec::Name("TSTP".into())).await),
            ErrorCode::BadRequest
        );
        client
            .signal(&id, SignalSpec::Name("SIGUSR1".into()))
            .await
            .unwrap();
        let done = client.wait(&id, None).await.unwrap();
        assert_eq!(done.status.exit_code(), Some(4));

        let agent = client.spawn(sh("echo ready; sleep 100")).await.unwrap();
        wait_ready(&client, &agent).await;
        client
            .signal(&agent.id.to_string(), SignalSpec::Number(15))
            .await
            .unwrap();
        let done = client.wait(&agent.id.to_string(), None).await.unwrap();
        assert_eq!(done.state(), AgentState::Killed);
        assert_eq!(done.status.signal(), Some(15));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn stdin_round_trips_and_reports_full_and_closed() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = AgentSpec {
            argv: vec!["cat".into()],
            stdin: StdinMode::Pipe,
            ..AgentSpec::default()
        };
        let cat = client.spawn(spec.clone()).await.unwrap();
        let id = cat.id.to_string();
        assert_eq!(
            client.write_stdin(&id, b"hello\n".to_vec()).await.unwrap(),
            6
        );
        assert_eq!(
            client.write_stdin(&id, b"world\n".to_vec()).await.unwrap(),
            6
        );
        client.close_stdin(&id).await.unwrap();
        let done = client.wait(&id, None).await.unwrap();
        assert_eq!(done.status.exit_code(), Some(0));
        assert_eq!(text(&all_records(&client, &cat).await), "hello\nworld\n");

        // No pipe: stdin_closed.
        let no_pipe = client.spawn(sh("sleep 100")).await.unwrap();
        assert_eq!(
            code(
                client
                    .write_stdin(&no_pipe.id.to_string(), b"x".to_vec())
                    .await
            ),
            ErrorCode::StdinClosed
        );
        // A child that never reads: stdin_full, never a hang, and other requests still served.
        spec.argv = vec!["sleep".into(), "100".into()];
        let deaf = client.spawn(spec).await.unwrap();
        let chunk = vec![b'x'; 512 * 1024];
        let mut full = None;
        for _ in 0..1000 {
            match client
                .write_stdin(&deaf.id.to_string(), chunk.clone())
                .await
            {
                Ok(_) => continue,
                Err(error) => {
                    full = error.code();
                    break;
                }
            }
        }
        assert_eq!(full, Some(ErrorCode::StdinFull));
        client.health().await.unwrap();
        // Oversize writes are refused outright.
        assert_eq!(
            code(
                client
                    .write_stdin(&deaf.id.to_string(), vec![0; 2 * 1024 * 1024])
                    .await
            ),
            ErrorCode::TooLarge
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn wait_times_out_without_blocking_other_requests() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("sleep 100")).await.unwrap();
        let id = agent.id.to_string();
        let long_wait = client.wait(&id, Some(Duration::from_secs(20)));
        let others = async {
            // While a wait is in flight on the same connection, other requests are answered.
            for _ in 0..20 {
                client.health().await.unwrap();
                client.get(&id).await.unwrap();
            }
            client.kill(&id).await.unwrap();
        };
        let (waited, ()) = tokio::join!(long_wait, others);
        assert_eq!(waited.unwrap().state(), AgentState::Killed);
        let sleeper = client.spawn(sh("sleep 100")).await.unwrap();
        assert_eq!(
            code(
                client
                    .wait(&sleeper.id.to_string(), Some(Duration::from_millis(100)))
                    .await
            ),
            ErrorCode::Timeout
        );
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn timeout_stops_the_agent_gracefully() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let mut spec = sh("sleep 100");
        spec.timeout_ms = Some(200);
        let agent = client.spawn(spec).await.unwrap();
        let done = client.wait(&agent.id.to_string(), None).await.unwrap();
        assert_eq!(done.state(), AgentState::Killed);
        assert_eq!(done.status.signal(), Some(15));
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn a_client_with_more_requests_than_it_may_have_in_flight_queues_them_unrefused() {
    within(async {
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("exec sleep 1000")).await.unwrap();
        let id = agent.id.to_string();
        // 100 long requests at once on one connection, which the daemon serves 64 at a time.
        let waits = (0..100).map(|_| client.wait(&id, Some(Duration::from_millis(300))));
        let codes: Vec<ErrorCode> = futures::future::join_all(waits)
            .await
            .into_iter()
            .map(code)
            .collect();
        assert_eq!(codes, vec![ErrorCode::Timeout; 100]);
        client.kill(&id).await.unwrap();
        daemon.shutdown().await;
    })
    .await
}
