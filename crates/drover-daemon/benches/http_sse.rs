//! SSE log benchmark: `event: log` events/s from the daemon's HTTP follower to 1 and to 100
//! followers, each checked for zero loss (exactly ids `1..=N`, in order, then `exit`), beside a
//! bare axum SSE stream of the same events measured in the same run.
//!
//! `cargo bench -p drover-daemon --bench http_sse` (`DROVER_BENCH_LINES` sets N, default 200000)
//!
//! - **replay**: the agent (`seq 1 N`) has finished; followers read the kept log and the exit.
//!   This measures the follower alone (store reads, JSON, framing, HTTP), not the agent.
//! - **live**: one follower attached before the agent writes, so it is bounded by capture.
//! - **baseline**: an axum `Sse` response built from the same event payloads already in memory,
//!   one `sse::Event` per record: the cost of HTTP + SSE framing with no store behind it.
//!
//! Every client is a plain HTTP/1.1 reader over `TcpStream` that de-chunks and checks each `id:`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::Router;
use support::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FOLLOWERS: usize = 100;

/// Read one SSE response to its end; the number of `log` events, checked to be `1..=n`, in
/// order, followed by an `exit` event.
async fn follow(addr: SocketAddr, path: &str, n: u64) -> u64 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The daemon needs its token; the bare baseline server has none.
    let auth = support::token_for(addr)
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::with_capacity(1 << 20);
    let mut body = Vec::with_capacity(1 << 20);
    let mut buf = vec![0u8; 1 << 18];
    let mut head_done = false;
    let mut ended = false;
    let mut expected = 1u64;
    let mut exited = false;
    while !ended {
        let got = stream.read(&mut buf).await.expect("read");
        assert!(got > 0, "connection closed before the end of the stream");
        raw.extend_from_slice(&buf[..got]);
        if !head_done {
            let Some((status, _, rest)) = support::parse_head(&raw) else {
                continue;
            };
            assert_eq!(status, 200);
            raw.drain(..rest);
            head_done = true;
        }
        ended = support::dechunk(&mut raw, &mut body);
        // Consume complete lines.
        let mut start = 0;
        while let Some(len) = body[start..].iter().position(|&b| b == b'\n') {
            let line = &body[start..start + len];
            if let Some(id) = line.strip_prefix(b"id: ") {
                let id: u64 = std::str::from_utf8(id).unwrap().parse().unwrap();
                assert_eq!(id, expected, "lost or duplicated event");
                expected += 1;
            } else if line == b"event: exit" {
                exited = true;
            }
            start += len + 1;
        }
        body.drain(..start);
    }
    assert!(exited, "the stream ended without an exit event");
    assert_eq!(expected - 1, n, "every event arrived");
    n
}

/// `followers` concurrent clients of `path`; events/s over all of them, and the wall time.
async fn run(addr: SocketAddr, path: &str, n: u64, followers: usize) -> (f64, Duration) {
    let started = Instant::now();
    let tasks: Vec<_> = (0..followers)
        .map(|_| {
            let path = path.to_owned();
            tokio::spawn(async move { follow(addr, &path, n).await })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await.expect("follower");
    }
    let elapsed = started.elapsed();
    (total as f64 / elapsed.as_secs_f64(), elapsed)
}

/// A bare axum SSE server sending `events` (id, data) and an exit, one `Event` each.
async fn start_baseline(events: Arc<Vec<(String, String)>>) -> SocketAddr {
    let app = Router::new().route(
        "/sse",
        get(move || {
            let events = Arc::clone(&events);
            async move {
                let logs = (0..events.len()).map(move |i| {
                    let (id, data) = &events[i];
                    Ok::<_, Infallible>(Event::default().id(id).event("log").data(data))
                });
                let exit = std::iter::once(Ok(Event::default()
                    .event("exit")
                    .data(r#"{"state":"exited","exit_code":0,"signal":null,"error":null}"#)));
                Sse::new(futures::stream::iter(logs.chain(exit)))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// The same payloads the daemon sends for `seq 1 n`, read from its history.
async fn payloads(daemon: &Daemon, id: &str, n: u64) -> Vec<(String, String)> {
    let mut events = Vec::with_capacity(n as usize);
    let mut since = 1;
    while since <= n {
        let page = daemon
            .get(&format!(
                "/v1/agents/{id}/logs?format=ndjson&since_seq={since}&limit=10000"
            ))
            .await;
        for line in page.text().lines() {
            events.push((since.to_string(), line.to_owned()));
            since += 1;
        }
    }
    events
}

fn row(what: &str, followers: usize, (rate, elapsed): (f64, Duration)) {
    println!(
        "{what:<34} {followers:>4} follower(s)  {rate:>12.0} events/s  ({:.2} s, zero loss)",
        elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let n: u64 = std::env::var("DROVER_BENCH_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let daemon = Daemon::start().await;
    println!("SSE log events, N = {n} records per follower\n");

    // Live: the follower is attached before the agent's first line.
    let id = daemon
        .spawn_spec(serde_json::json!({
            "argv": ["sh", "-c", format!("read go; seq 1 {n}")],
            "stdin": "pipe",
        }))
        .await;
    let path = format!("/v1/agents/{id}/logs?follow=true");
    let live = {
        let path = path.clone();
        let addr = daemon.addr;
        tokio::spawn(async move { run(addr, &path, n, 1).await })
    };
    support::wait_for("the live follower", || async {
        daemon.metric("drover_followers").await == 1
    })
    .await;
    let go = support::request(
        daemon.addr,
        "POST",
        &format!("/v1/agents/{id}/stdin"),
        &[],
        b"go\n",
    )
    .await;
    assert_eq!(go.status, 200);
    let live = live.await.unwrap();
    daemon.wait_exit(&id).await;

    // Replay of the finished agent's log, then the same events from a bare axum SSE stream.
    let replay_1 = run(daemon.addr, &path, n, 1).await;
    let replay_many = run(daemon.addr, &path, n, FOLLOWERS).await;
    let baseline = start_baseline(Arc::new(payloads(&daemon, &id, n).await)).await;
    let bare_1 = run(baseline, "/sse", n, 1).await;
    let bare_many = run(baseline, "/sse", n, FOLLOWERS).await;

    row("drover SSE, live (capture-bound)", 1, live);
    row("drover SSE, replay", 1, replay_1);
    row("bare axum SSE, same events", 1, bare_1);
    row("drover SSE, replay", FOLLOWERS, replay_many);
    row("bare axum SSE, same events", FOLLOWERS, bare_many);
    println!(
        "\nratio drover/bare: 1 follower {:.2}, {FOLLOWERS} followers {:.2}",
        replay_1.0 / bare_1.0,
        replay_many.0 / bare_many.0
    );
    daemon.stop().await;
}
