//! The REST side of the HTTP API against the real daemon: every route, its status and body, and
//! bad input getting a typed JSON error and nothing else.

mod support;

use serde_json::json;
use support::{dechunk, parse_head, request, wait_for, within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn health_answers_with_version_and_agent_counts() {
    within(async {
        let daemon = Daemon::start().await;
        let response = daemon.get("/v1/health").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.header("content-type"), Some("application/json"));
        let health = response.json();
        assert_eq!(health["protocol"], 1);
        assert!(health["version"].is_string());
        assert!(health["agents"].is_object());
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn spawn_get_list_kill_wait_remove() {
    within(async {
        let daemon = Daemon::start().await;
        let spawned = daemon
            .post_json(
                "/v1/agents",
                &json!({"spec": {"name": "sleeper", "argv": ["sleep", "30"], "labels": {"team": "a"}}}),
            )
            .await;
        assert_eq!(spawned.status, 201, "{}", spawned.text());
        let agent = spawned.json()["agent"].clone();
        assert_eq!(agent["state"], "running");
        assert_eq!(agent["name"], "sleeper");
        let id = agent["id"].as_str().expect("id").to_owned();
        let other = daemon.spawn(&["true"]).await;
        daemon.wait_exit(&other).await;

        let by_name = daemon.get("/v1/agents/sleeper").await;
        assert_eq!(by_name.status, 200);
        assert_eq!(by_name.json()["agent"]["id"], id.as_str());

        let ids = |response: support::Response| -> Vec<String> {
            assert_eq!(response.status, 200, "{}", response.text());
            response.json()["agents"]
                .as_array()
                .expect("agents")
                .iter()
                .map(|a| a["id"].as_str().expect("id").to_owned())
                .collect()
        };
        assert_eq!(ids(daemon.get("/v1/agents").await), vec![id.clone(), other.clone()]);
        assert_eq!(ids(daemon.get("/v1/agents?state=running").await), vec![id.clone()]);
        assert_eq!(ids(daemon.get("/v1/agents?state=exited").await), vec![other.clone()]);
        assert_eq!(ids(daemon.get("/v1/agents?label=team=a").await), vec![id.clone()]);
        assert!(ids(daemon.get("/v1/agents?label=team=b").await).is_empty());
        assert_eq!(ids(daemon.get("/v1/agents?limit=1").await), vec![id.clone()]);

        // A live agent cannot be removed.
        let busy = request(daemon.addr, "DELETE", &format!("/v1/agents/{id}"), &[], b"").await;
        assert_eq!(busy.status, 409);
        assert_eq!(busy.error_code(), "invalid_state");

        let killed = daemon
            .post_json(&format!("/v1/agents/{id}/kill"), &json!({}))
            .await;
        assert_eq!(killed.status, 200, "{}", killed.text());
        let info = daemon.wait_exit(&id).await;
        assert_eq!(info["state"], "killed");
        assert_eq!(info["signal"], 9);

        // Actions on a finished agent are invalid_state.
        let late = daemon
            .post_json(&format!("/v1/agents/{id}/pause"), &json!({}))
            .await;
        assert_eq!(late.status, 409);
        assert_eq!(late.error_code(), "invalid_state");

        let removed = request(daemon.addr, "DELETE", &format!("/v1/agents/{id}"), &[], b"").await;
        assert_eq!(removed.status, 200, "{}", removed.text());
        let gone = daemon.get(&format!("/v1/agents/{id}")).await;
        assert_eq!(gone.status, 404);
        assert_eq!(gone.error_code(), "not_found");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pause_resume_signal_and_stop_with_grace() {
    within(async {
        let daemon = Daemon::start().await;
        // Ignores TERM, so only the grace's SIGKILL ends it.
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                "trap '' TERM; echo ready; while true; do sleep 0.05; done",
            ])
            .await;
        support::wait_for("ready", || async { daemon.stored(&id).await == 1 }).await;
        let action = |path: &'static str, body: serde_json::Value| {
            let daemon = &daemon;
            let id = id.clone();
            async move {
                daemon
                    .post_json(&format!("/v1/agents/{id}/{path}"), &body)
                    .await
            }
        };
        let paused = action("pause", json!({})).await;
        assert_eq!(paused.status, 200, "{}", paused.text());
        assert_eq!(paused.json()["agent"]["state"], "paused");
        let resumed = action("resume", json!({})).await;
        assert_eq!(resumed.json()["agent"]["state"], "running");
        let unknown = action("signal", json!({"signal": "NOPE"})).await;
        assert_eq!(unknown.status, 400);
        assert_eq!(unknown.error_code(), "bad_request");
        let missing = action("signal", json!({})).await;
        assert_eq!(missing.status, 400);
        let signalled = action("signal", json!({"signal": "TERM"})).await;
        assert_eq!(signalled.status, 200, "{}", signalled.text());
        let signalled = action("signal", json!({"signal": 15})).await;
        assert_eq!(signalled.status, 200, "{}", signalled.text());
        let stopped = action("stop", json!({"grace_ms": 100})).await;
        assert_eq!(stopped.status, 200, "{}", stopped.text());
        let info = daemon.wait_exit(&id).await;
        assert_eq!(info["state"], "killed");
        assert_eq!(info["signal"], 9);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn stdin_write_and_close() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn_spec(json!({"argv": ["cat"], "stdin": "pipe"}))
            .await;
        let written = request(
            daemon.addr,
            "POST",
            &format!("/v1/agents/{id}/stdin"),
            &[("Content-Type", "application/octet-stream")],
            b"hello\n\xff\n",
        )
        .await;
        assert_eq!(written.status, 200, "{}", written.text());
        assert_eq!(written.json()["written"], 8);
        let closed = request(
            daemon.addr,
            "POST",
            &format!("/v1/agents/{id}/stdin/close"),
            &[],
            b"",
        )
        .await;
        assert_eq!(closed.status, 200, "{}", closed.text());
        let info = daemon.wait_exit(&id).await;
        assert_eq!(info["exit_code"], 0);
        let logs = daemon.get(&format!("/v1/agents/{id}/logs")).await.json();
        assert_eq!(logs["records"][0]["text"], "hello\n");
        assert_eq!(logs["records"][1]["data_b64"], "/wo=");
        // No stdin pipe: stdin_closed (409).
        let no_pipe = daemon.spawn(&["sleep", "5"]).await;
        let refused = request(
            daemon.addr,
            "POST",
            &format!("/v1/agents/{no_pipe}/stdin"),
            &[],
            b"x",
        )
        .await;
        assert_eq!(refused.status, 409, "{}", refused.text());
        assert_eq!(refused.error_code(), "stdin_closed");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn log_history_as_json_ndjson_and_text() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                "for i in $(seq 1 50); do echo line $i; done; echo oops >&2",
            ])
            .await;
        daemon.wait_exit(&id).await;
        let json = daemon
            .get(&format!("/v1/agents/{id}/logs?since_seq=10&limit=5"))
            .await;
        assert_eq!(json.status, 200);
        let body = json.json();
        let seqs: Vec<u64> = body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(seqs, vec![10, 11, 12, 13, 14]);
        assert_eq!(body["records"][0]["text"], "line 10\n");
        assert_eq!(body["records"][0]["stream"], "stdout");
        assert_eq!(body["records"][0]["partial"], false);
        assert_eq!(body["next_seq"], 15);
        assert_eq!(body["first_seq"], 1);
        assert_eq!(body["truncated"], false);
        // "line 1\n".."line 9\n" (7 bytes each), "line 10\n".."line 50\n" (8), "oops\n" (5).
        assert_eq!(body["output_bytes"], 9 * 7 + 41 * 8 + 5);
        assert!(body["disk_bytes"].as_u64().expect("disk_bytes") > 0);

        let ndjson = request(
            daemon.addr,
            "GET",
            &format!("/v1/agents/{id}/logs?tail=2"),
            &[("Accept", "application/x-ndjson")],
            b"",
        )
        .await;
        assert_eq!(ndjson.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(ndjson.header("x-drover-next-seq"), Some("52"));
        assert_eq!(ndjson.header("x-drover-output-bytes"), Some("396"));
        let lines: Vec<serde_json::Value> = ndjson
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["text"], "line 50\n");
        assert_eq!(lines[1]["stream"], "stderr");

        let text = daemon
            .get(&format!(
                "/v1/agents/{id}/logs?format=text&stream=stdout&limit=3"
            ))
            .await;
        assert_eq!(text.text(), "line 1\nline 2\nline 3\n");
        let errors = daemon
            .get(&format!("/v1/agents/{id}/logs?format=text&stream=stderr"))
            .await;
        assert_eq!(errors.text(), "oops\n");
        daemon.stop().await;
    })
    .await;
}

/// `download=true` sends the whole kept log as one file, byte for byte (bytes that are not
/// UTF-8 included), however many pages of 10,000 records it takes; `ndjson` keeps every seq.
#[tokio::test]
async fn a_download_is_the_whole_log_byte_for_byte() {
    within(async {
        let daemon = Daemon::start().await;
        const N: usize = 25_000;
        let id = daemon
            .spawn_spec(json!({
                "name": "build-7",
                "argv": ["sh", "-c",
                    "i=1; while [ $i -le 25000 ]; do printf 'line %d \\377\\n' $i; i=$((i+1)); done; \
                     echo done >&2"],
            }))
            .await;
        daemon.wait_exit(&id).await;
        let mut expected = Vec::new();
        for i in 1..=N {
            expected.extend_from_slice(format!("line {i} ").as_bytes());
            expected.extend_from_slice(b"\xff\n");
        }

        let file = daemon
            .get("/v1/agents/build-7/logs?download=true&stream=stdout")
            .await;
        assert_eq!(file.status, 200, "{}", file.text());
        assert_eq!(file.header("content-type"), Some("text/plain"));
        assert_eq!(
            file.header("content-disposition"),
            Some("attachment; filename=\"build-7.log\"")
        );
        assert_eq!(file.header("x-drover-first-seq"), Some("1"));
        assert_eq!(file.header("x-drover-next-seq"), Some("25002"));
        assert_eq!(file.body.len(), expected.len());
        assert!(file.body == expected, "the file differs from what the agent printed");

        // Both streams, as records: every seq once, in order; named by id without a name.
        let unnamed = daemon
            .spawn(&["sh", "-c", "seq 1 12000; echo err >&2"])
            .await;
        daemon.wait_exit(&unnamed).await;
        let records = daemon
            .get(&format!("/v1/agents/{unnamed}/logs?download=true&format=ndjson"))
            .await;
        assert_eq!(records.status, 200);
        assert_eq!(records.header("content-type"), Some("application/x-ndjson"));
        assert_eq!(
            records.header("content-disposition"),
            Some(format!("attachment; filename=\"{unnamed}.ndjson\"").as_str())
        );
        let seqs: Vec<u64> = records
            .text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("ndjson")["seq"]
                .as_u64()
                .expect("seq"))
            .collect();
        assert_eq!(seqs, (1..=12_001).collect::<Vec<u64>>());

        // A range: since_seq and until_seq bound the file.
        let part = daemon
            .get(&format!("/v1/agents/{unnamed}/logs?download=true&since_seq=11999&until_seq=12001"))
            .await;
        assert_eq!(part.text(), "11999\n12000\n");

        for (query, code) in [
            ("download=true&format=json", "bad_request"),
            ("download=true&limit=5", "bad_request"),
            ("download=maybe", "bad_request"),
            ("download=true&follow=true", "bad_request"),
        ] {
            let refused = daemon
                .get(&format!("/v1/agents/{unnamed}/logs?{query}"))
                .await;
            assert_eq!(refused.status, 400, "{query}");
            assert_eq!(refused.error_code(), code, "{query}");
        }
        let unknown = daemon.get("/v1/agents/no-such-agent/logs?download=true").await;
        assert_eq!(unknown.status, 404);
        assert_eq!(unknown.error_code(), "not_found");
        daemon.stop().await;
    })
    .await;
}

/// A download that can no longer be whole (retention removed records it had not sent yet) is
/// cut off: the client sees the transfer end without its last chunk, never a file with a hole.
#[tokio::test]
async fn a_download_overtaken_by_retention_is_aborted_not_holed() {
    within(async {
        let daemon = Daemon::start().await;
        let gate = daemon.state_dir.join("gate");
        let line = "x".repeat(99);
        // 40,000 lines of 100 bytes kept (4 pages) under a 4 MiB budget; once the gate opens,
        // 200,000 more push every one of them out.
        let script = format!(
            "yes {line} | head -n 40000; while [ ! -e {gate} ]; do sleep 0.05; done; \
             yes {line} | head -n 200000; exec sleep 1000",
            gate = gate.display()
        );
        let id = daemon
            .spawn_spec(json!({"argv": ["sh", "-c", script], "log_budget": 4 << 20}))
            .await;
        let stored = |n: u64| {
            let daemon = &daemon;
            let id = id.clone();
            async move { daemon.stored(&id).await >= n }
        };
        wait_for("40,000 lines stored", || stored(40_000)).await;

        // A small receive buffer (no autotuning), so the kernels hold well under the file.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        let mut socket = socket.connect(daemon.addr).await.expect("connect");
        let head = format!(
            "GET /v1/agents/{id}/logs?download=true HTTP/1.1\r\nHost: {}\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            daemon.addr, daemon.token
        );
        socket.write_all(head.as_bytes()).await.expect("request");
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let (status, _, body_at) = loop {
            let n = socket.read(&mut buf).await.expect("read");
            assert!(n > 0, "the response ended before its head");
            raw.extend_from_slice(&buf[..n]);
            if let Some(head) = parse_head(&raw) {
                break head;
            }
        };
        assert_eq!(status, 200);
        let first_seq: u64 = {
            let head = String::from_utf8_lossy(&raw[..body_at]).to_lowercase();
            head.lines()
                .find_map(|l| l.strip_prefix("x-drover-first-seq: "))
                .expect("first seq")
                .trim()
                .parse()
                .expect("number")
        };
        // Stop reading; let the agent write until the whole range is gone from the log.
        std::fs::write(&gate, b"").expect("open the gate");
        let gone = first_seq + 40_000;
        wait_for("the download's range removed by retention", || {
            let daemon = &daemon;
            let id = id.clone();
            async move {
                let bounds = daemon
                    .get(&format!("/v1/agents/{id}/logs?tail=0"))
                    .await
                    .json();
                bounds["first_seq"].as_u64().unwrap_or(0) > gone
            }
        })
        .await;
        // Read on to the end: it comes without the last chunk, and short.
        let mut rest = raw.split_off(body_at);
        socket.read_to_end(&mut rest).await.ok();
        let mut body = Vec::new();
        let complete = dechunk(&mut rest, &mut body);
        assert!(!complete, "a download with a hole ended as if whole");
        assert!(body.len() < 40_000 * 100, "{} bytes", body.len());
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn bad_input_gets_typed_json_errors() {
    within(async {
        let daemon = Daemon::start().await;
        let expect = |response: support::Response, status: u16, code: &str| {
            assert_eq!(response.status, status, "{}", response.text());
            assert_eq!(
                response.header("content-type"),
                Some("application/json"),
                "{}",
                response.text()
            );
            assert_eq!(response.error_code(), code);
        };
        let post = |path: &'static str, body: &'static [u8]| {
            request(
                daemon.addr,
                "POST",
                path,
                &[("Content-Type", "application/json")],
                body,
            )
        };
        expect(post("/v1/agents", b"{not json").await, 400, "bad_request");
        expect(post("/v1/agents", b"[]").await, 400, "bad_request");
        expect(post("/v1/agents", b"{}").await, 400, "bad_request");
        expect(
            post("/v1/agents", br#"{"spec": {"argv": []}}"#).await,
            400,
            "bad_request",
        );
        expect(daemon.get("/v1/nothing").await, 404, "not_found");
        expect(daemon.get("/v1/agents/unknown").await, 404, "not_found");
        expect(
            daemon.get("/v1/agents/unknown/logs").await,
            404,
            "not_found",
        );
        expect(post("/v1/agents/unknown/kill", b"").await, 404, "not_found");
        expect(
            request(daemon.addr, "PUT", "/v1/agents", &[], b"").await,
            405,
            "bad_request",
        );
        expect(
            daemon.get("/v1/agents?limit=many").await,
            400,
            "bad_request",
        );
        expect(
            daemon.get("/v1/agents?state=sleepy").await,
            400,
            "bad_request",
        );
        expect(
            daemon.get("/v1/agents?label=nokey").await,
            400,
            "bad_request",
        );

        let id = daemon.spawn(&["true"]).await;
        expect(
            daemon
                .get(&format!("/v1/agents/{id}/logs?stream=stdin"))
                .await,
            400,
            "bad_request",
        );
        expect(
            daemon
                .get(&format!("/v1/agents/{id}/logs?format=xml"))
                .await,
            400,
            "bad_request",
        );
        expect(
            daemon
                .get(&format!("/v1/agents/{id}/wait?timeout_ms=999999999"))
                .await,
            400,
            "bad_request",
        );

        // Oversize bodies: 413 too_large, and the daemon carries on.
        let mut huge = br#"{"spec": {"argv": ["true"], "context": ""#.to_vec();
        huge.extend(std::iter::repeat_n(b'x', 2 * 1024 * 1024));
        huge.extend_from_slice(br#""}}"#);
        expect(
            request(daemon.addr, "POST", "/v1/agents", &[], &huge).await,
            413,
            "too_large",
        );
        let sleeper = daemon
            .spawn_spec(json!({"argv": ["sleep", "30"], "stdin": "pipe"}))
            .await;
        let too_much = vec![b'x'; 1024 * 1024 + 1];
        expect(
            request(
                daemon.addr,
                "POST",
                &format!("/v1/agents/{sleeper}/stdin"),
                &[],
                &too_much,
            )
            .await,
            413,
            "too_large",
        );
        assert_eq!(daemon.get("/v1/health").await.status, 200);
        let killed = daemon
            .post_json(&format!("/v1/agents/{sleeper}/kill"), &json!({}))
            .await;
        assert_eq!(killed.status, 200);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn wait_times_out_with_504() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon.spawn(&["sleep", "30"]).await;
        let waited = daemon
            .get(&format!("/v1/agents/{id}/wait?timeout_ms=50"))
            .await;
        assert_eq!(waited.status, 504, "{}", waited.text());
        assert_eq!(waited.error_code(), "timeout");
        let killed = daemon
            .post_json(&format!("/v1/agents/{id}/kill"), &json!({}))
            .await;
        assert_eq!(killed.status, 200);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn spawning_past_the_limit_is_429() {
    within(async {
        let daemon = Daemon::start_with(|config| config.max_agents = 1).await;
        let first = daemon.spawn(&["sleep", "30"]).await;
        let second = daemon
            .post_json("/v1/agents", &json!({"spec": {"argv": ["sleep", "30"]}}))
            .await;
        assert_eq!(second.status, 429, "{}", second.text());
        assert_eq!(second.error_code(), "limit_reached");
        let killed = daemon
            .post_json(&format!("/v1/agents/{first}/kill"), &json!({}))
            .await;
        assert_eq!(killed.status, 200);
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    within(async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&["sh", "-c", "for i in $(seq 1 10); do echo line $i; done"])
            .await;
        daemon.wait_exit(&id).await;
        let response = daemon.get("/metrics").await;
        assert_eq!(response.status, 200);
        assert!(response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
        let text = response.text();
        for line in [
            "drover_agents{state=\"exited\"} 1",
            "drover_agents{state=\"running\"} 0",
            "drover_spawns_total 1",
            "drover_records_total 10",
            "drover_captured_bytes_total 71",
            "drover_followers 0",
            "drover_request_duration_seconds_count{op=\"spawn\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(text.contains("drover_request_duration_seconds_sum{op=\"wait\"}"));
        daemon.stop().await;
    })
    .await;
}
