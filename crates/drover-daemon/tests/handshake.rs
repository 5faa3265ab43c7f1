//! Connections that never finish their handshake are dropped after HANDSHAKE_IVL, and cost the
//! daemon a bounded amount of memory. Its own test binary, so the RSS it measures is the
//! daemon's alone.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn connections_that_never_finish_their_handshake_are_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    within(async {
        let daemon = TestDaemon::start().await;
        let address = daemon
            .addresses
            .control
            .strip_prefix("tcp://")
            .unwrap()
            .to_owned();
        let before = rss_kib();
        let started = Instant::now();
        let mut streams = Vec::new();
        for _ in 0..300 {
            let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
            // Half a greeting, then nothing.
            stream
                .write_all(&[0xff, 0, 0, 0, 0, 0, 0, 0])
                .await
                .unwrap();
            streams.push(stream);
        }
        // Every one is closed by the daemon (EOF after its greeting) once HANDSHAKE_IVL passes.
        for mut stream in streams {
            let mut sink = Vec::new();
            let _ = stream.read_to_end(&mut sink).await;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(4),
            "closed before the handshake interval: {took:?}"
        );
        assert!(took < Duration::from_secs(15), "{took:?}");
        let grown = rss_kib().saturating_sub(before);
        assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
        daemon.client().await.health().await.unwrap();
        daemon.shutdown().await;
    })
    .await
}
