//! `GET /v1/agents/{id}/logs?follow=true`: the Server-Sent Events log stream, against the real
//! daemon. Every stream is checked for the exact sequence `1..=N`, once each, in order.

mod support;

use serde_json::json;
use support::{log_seqs, within, Daemon, SseClient};

/// An agent printing `line 1` .. `line N` with a short pause after each line, so followers
/// attach while it is still writing.
fn slow_writer(n: u32) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!("for i in $(seq 1 {n}); do echo line $i; sleep 0.005; done"),
    ]
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The `exit` event ends the stream, and nothing follows it.
fn assert_exit_last(events: &[support::SseEvent], code: i64) {
    let last = events.last().expect("some events");
    assert_eq!(last.event, "exit", "the last event is exit: {last:?}");
    let exit = last.json();
    assert_eq!(exit["state"], "exited");
    assert_eq!(exit["exit_code"], code);
    assert_eq!(
        events.iter().filter(|e| e.event == "exit").count(),
        1,
        "exactly one exit event"
    );
}

#[tokio::test]
async fn follower_of_a_writing_agent_gets_exactly_one_to_n_then_exit() {
    within(async {
        let daemon = Daemon::start().await;
        let n = 300;
        let id = daemon.spawn(&argv(&slow_writer(n))).await;
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[],
        )
        .await;
        assert_eq!(client.status, 200);
        assert_eq!(client.header("content-type"), Some("text/event-stream"));
        let events = client.collect().await;
        assert_eq!(log_seqs(&events), (1..=u64::from(n)).collect::<Vec<_>>());
        assert_exit_last(&events, 0);
        // The agent was still writing when the follower attached (else this tests replay only).
        let info = daemon.wait_exit(&id).await;
        let started = info["started_at"].as_i64().expect("started_at");
        let first_ts = events[0].json()["ts"].as_i64().expect("ts");
        assert!(first_ts >= started);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn reconnect_with_last_event_id_resumes_exactly_after_it() {
    within(async {
        let daemon = Daemon::start().await;
        let n = 300u64;
        let k = 57u64;
        let id = daemon.spawn(&argv(&slow_writer(n as u32))).await;
        let path = format!("/v1/agents/{id}/logs?follow=true");
        let mut first = SseClient::connect(daemon.addr, &path, &[]).await;
        let mut seen = Vec::new();
        while (seen.len() as u64) < k {
            let event = first.next().await.expect("stream open");
            seen.push(event);
        }
        drop(first);
        assert_eq!(log_seqs(&seen), (1..=k).collect::<Vec<_>>());
        let k_text = k.to_string();
        let mut second =
            SseClient::connect(daemon.addr, &path, &[("Last-Event-ID", &k_text)]).await;
        let rest = second.collect().await;
        assert_eq!(log_seqs(&rest), (k + 1..=n).collect::<Vec<_>>());
        assert_exit_last(&rest, 0);
        // Last-Event-ID wins over since_seq.
        let mut third = SseClient::connect(
            daemon.addr,
            &format!("{path}&since_seq=1"),
            &[("Last-Event-ID", "290")],
        )
        .await;
        assert_eq!(
            log_seqs(&third.collect().await),
            (291..=n).collect::<Vec<_>>()
        );
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn since_seq_starts_at_that_record() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&["sh", "-c", "for i in $(seq 1 100); do echo line $i; done"])
            .await;
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true&since_seq=40"),
            &[],
        )
        .await;
        let events = client.collect().await;
        assert_eq!(log_seqs(&events), (40..=100).collect::<Vec<_>>());
        assert_exit_last(&events, 0);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn finished_agent_replays_what_is_kept_sends_exit_and_closes() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                "for i in $(seq 1 500); do echo line $i; done; exit 3",
            ])
            .await;
        let info = daemon.wait_exit(&id).await;
        assert_eq!(info["exit_code"], 3);
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[],
        )
        .await;
        let events = client.collect().await;
        assert_eq!(log_seqs(&events), (1..=500).collect::<Vec<_>>());
        assert_exit_last(&events, 3);
        // A late reconnect after the end gets only the exit.
        let mut again = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[("Last-Event-ID", "500")],
        )
        .await;
        let events = again.collect().await;
        assert_eq!(events.len(), 1);
        assert_exit_last(&events, 3);
        // tail=N on a finished agent: the last N, then exit.
        let mut tail = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true&tail=3"),
            &[],
        )
        .await;
        let events = tail.collect().await;
        assert_eq!(log_seqs(&events), vec![498, 499, 500]);
        assert_exit_last(&events, 3);
        daemon.stop().await;
    })
    .await;
}

/// An agent that prints `line 1..=first`, then one line per stdin line until stdin closes.
fn echo_agent(first: u32) -> serde_json::Value {
    json!({
        "argv": ["sh", "-c", format!(
            "for i in $(seq 1 {first}); do echo line $i; done; i={first}; \
             while read l; do i=$((i+1)); echo line $i; done"
        )],
        "stdin": "pipe",
    })
}

async fn write_lines(daemon: &Daemon, id: &str, n: usize) {
    let body = "x\n".repeat(n);
    let response = support::request(
        daemon.addr,
        "POST",
        &format!("/v1/agents/{id}/stdin"),
        &[],
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["written"], body.len());
}

async fn close_stdin(daemon: &Daemon, id: &str) {
    let response = support::request(
        daemon.addr,
        "POST",
        &format!("/v1/agents/{id}/stdin/close"),
        &[],
        b"",
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn tail_zero_follow_gives_only_lines_printed_from_then_on() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon.spawn_spec(echo_agent(20)).await;
        support::wait_for("the first 20 lines stored", || async {
            daemon.stored(&id).await == 20
        })
        .await;
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true&tail=0"),
            &[],
        )
        .await;
        support::wait_for("the follower to be counted", || async {
            daemon.metric("drover_followers").await == 1
        })
        .await;
        write_lines(&daemon, &id, 5).await;
        close_stdin(&daemon, &id).await;
        let events = client.collect().await;
        assert_eq!(log_seqs(&events), (21..=25).collect::<Vec<_>>());
        assert_exit_last(&events, 0);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn late_subscriber_gets_history_then_live_with_no_gap() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon.spawn_spec(echo_agent(100)).await;
        support::wait_for("100 lines stored", || async {
            daemon.stored(&id).await == 100
        })
        .await;
        // Attached after 100 lines: gets them from the store, then the live ones.
        let path = format!("/v1/agents/{id}/logs?follow=true");
        let mut late = SseClient::connect(daemon.addr, &path, &[]).await;
        let mut seen = Vec::new();
        while seen.len() < 100 {
            seen.push(late.next().await.expect("history"));
        }
        write_lines(&daemon, &id, 150).await;
        close_stdin(&daemon, &id).await;
        seen.extend(late.collect().await);
        assert_eq!(log_seqs(&seen), (1..=250).collect::<Vec<_>>());
        assert_exit_last(&seen, 0);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn removed_records_are_announced_as_truncated() {
    within(async {
        let daemon = Daemon::start_with(|config| {
            config.store.segment_bytes = 1024;
            // The smallest budget a daemon takes; the agent prints about 73 KB.
            config.store.agent_budget = 64 * 1024;
        })
        .await;
        let id = daemon
            // Pauses make many small appends, so the log spans many segments.
            .spawn(&[
                "sh",
                "-c",
                "for i in $(seq 1 8000); do echo line $i; \
                 if [ $((i % 80)) = 0 ]; then sleep 0.002; fi; done",
            ])
            .await;
        daemon.wait_exit(&id).await;
        let first = support::request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?limit=1"),
            &[],
            b"",
        )
        .await
        .json()["first_seq"]
            .as_u64()
            .expect("first_seq");
        assert!(first > 1, "retention removed the oldest records");
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true&since_seq=1"),
            &[],
        )
        .await;
        let events = client.collect().await;
        assert_eq!(events[0].event, "truncated");
        let marker = events[0].json();
        assert_eq!(marker["requested"], 1);
        let available = marker["first_available"].as_u64().expect("first_available");
        assert!(available >= first);
        assert_eq!(
            log_seqs(&events[1..]),
            (available..=8000).collect::<Vec<_>>()
        );
        assert_exit_last(&events, 0);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn non_utf8_records_carry_base64_and_stream_filter_applies() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                "printf 'ok\\n'; printf '\\377\\376\\n'; echo err >&2",
            ])
            .await;
        daemon.wait_exit(&id).await;
        let mut client = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[],
        )
        .await;
        let events = client.collect().await;
        let logs: Vec<_> = events.iter().filter(|e| e.event == "log").collect();
        assert_eq!(logs.len(), 3);
        let by_stream = |stream: &str| {
            logs.iter()
                .map(|e| e.json())
                .filter(|d| d["stream"] == stream)
                .collect::<Vec<_>>()
        };
        let stdout = by_stream("stdout");
        assert_eq!(stdout[0]["text"], "ok\n");
        assert_eq!(stdout[1]["data_b64"], "//4K");
        assert!(stdout[1].get("text").is_none());
        assert_eq!(by_stream("stderr")[0]["text"], "err\n");
        let mut only_err = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true&stream=stderr"),
            &[],
        )
        .await;
        let events = only_err.collect().await;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].json()["text"], "err\n");
        assert_eq!(events[1].event, "exit");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn disconnecting_followers_leave_no_task_or_subscriber_behind() {
    within(async {
        let daemon = Daemon::start().await;
        // One agent idle on stdin (streams pending with nothing to send), one still writing.
        let idle = daemon.spawn_spec(echo_agent(3)).await;
        let busy = daemon
            .spawn(&["sh", "-c", "while true; do echo tick; sleep 0.01; done"])
            .await;
        support::wait_for("the idle agent's lines", || async {
            daemon.stored(&idle).await == 3
        })
        .await;
        assert_eq!(daemon.metric("drover_followers").await, 0);
        let metrics = tokio::runtime::Handle::current().metrics();
        let tasks_before = metrics.num_alive_tasks();
        let mut clients = Vec::new();
        for agent in [&idle, &busy, &idle, &busy, &idle, &busy] {
            let mut client = SseClient::connect(
                daemon.addr,
                &format!("/v1/agents/{agent}/logs?follow=true"),
                &[],
            )
            .await;
            client.next().await.expect("a first event");
            clients.push(client);
        }
        let mut events = SseClient::connect(daemon.addr, "/v1/events?since=0", &[]).await;
        events.next().await.expect("a first lifecycle event");
        assert_eq!(daemon.metric("drover_followers").await, 6);
        assert_eq!(daemon.metric("drover_event_followers").await, 1);
        assert!(metrics.num_alive_tasks() > tasks_before);
        drop(clients);
        drop(events);
        support::wait_for("followers to be dropped", || async {
            daemon.metric("drover_followers").await == 0
                && daemon.metric("drover_event_followers").await == 0
        })
        .await;
        support::wait_for("connection tasks to end", || async {
            metrics.num_alive_tasks() <= tasks_before
        })
        .await;
        for agent in [&idle, &busy] {
            let response = daemon
                .post_json(&format!("/v1/agents/{agent}/kill"), &json!({}))
                .await;
            assert_eq!(response.status, 200, "{}", response.text());
        }
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn follow_errors_are_json() {
    within(async {
        let daemon = Daemon::start().await;
        let missing = support::request(
            daemon.addr,
            "GET",
            "/v1/agents/nope/logs?follow=true",
            &[("Accept", "text/event-stream")],
            b"",
        )
        .await;
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error_code(), "not_found");
        let id = daemon.spawn(&["true"]).await;
        let bad_id = support::request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[("Accept", "text/event-stream"), ("Last-Event-ID", "abc")],
            b"",
        )
        .await;
        assert_eq!(bad_id.status, 400);
        assert_eq!(bad_id.error_code(), "bad_request");
        let not_sse = support::request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[("Accept", "application/json")],
            b"",
        )
        .await;
        assert_eq!(not_sse.status, 400);
        assert_eq!(not_sse.error_code(), "bad_request");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_last_event_id_beyond_the_log_is_refused_not_followed_silently() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon.spawn(&["sh", "-c", "seq 1 10"]).await;
        daemon.wait_exit(&id).await;
        let response = support::request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[("Accept", "text/event-stream"), ("Last-Event-ID", "50")],
            b"",
        )
        .await;
        assert_eq!(response.status, 400);
        assert_eq!(response.error_code(), "bad_request");
        daemon.stop().await;
    })
    .await;
}

/// An agent removed after its end but before its log stream wrote the final event (the stream's
/// reader was behind: here it reads nothing until then). The exit event says how the agent
/// ended, never the `running` the stream started with: before, a removed agent's exit event
/// fell back to the snapshot taken when the stream opened (seen with `rm`, `prune` and a small
/// `max_ended_agents` racing an agent's end).
#[tokio::test]
async fn the_exit_event_says_how_an_agent_ended_though_it_was_removed_before_it() {
    within(async {
        let daemon = Daemon::start().await;
        let gate = tempfile::tempdir().unwrap();
        let go = gate.path().join("go");
        let script = format!(
            "while [ ! -e {} ]; do sleep 0.01; done; seq -f 'line %g' 1 600000",
            go.display()
        );
        let id = daemon.spawn(&["sh", "-c", &script]).await;
        // Opened while the agent runs; not read until the agent is gone.
        let mut stream = SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{id}/logs?follow=true"),
            &[],
        )
        .await;
        std::fs::write(&go, b"").unwrap();
        assert_eq!(daemon.wait_exit(&id).await["state"], "exited");
        let removed =
            support::request(daemon.addr, "DELETE", &format!("/v1/agents/{id}"), &[], b"").await;
        assert_eq!(removed.status, 200, "{}", removed.text());
        let events = stream.collect().await;
        let last = events.last().expect("some events");
        assert_eq!(last.event, "exit", "{last:?}");
        assert_eq!(last.json()["state"], "exited", "{last:?}");
        assert_eq!(last.json()["exit_code"], 0, "{last:?}");
        daemon.stop().await;
    })
    .await;
}
