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

/// TCP keepalive is armed on the daemon's side of a control connection (libzmq compiles its
/// `ZMQ_TCP_KEEPALIVE*` options into no-ops unless built with the platform's features), so a
/// peer that vanishes without a FIN is found and dropped.
#[tokio::test]
async fn accepted_control_connections_have_tcp_keepalive_armed() {
    within(async {
        let daemon = TestDaemon::start().await;
        let port = daemon
            .addresses
            .control
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap();
        let client = daemon.client().await;
        client.health().await.unwrap();
        // /proc/net/tcp: `sl local rem st queues tr:when …`; `tr` 2 is the keepalive timer,
        // shown once no retransmit or delayed-ack timer is pending on the connection.
        let timers = || -> Vec<String> {
            std::fs::read_to_string("/proc/net/tcp")
                .unwrap()
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local = u16::from_str_radix(fields[1].rsplit(':').next()?, 16).ok()?;
                    (local == port && fields[3] == "01").then(|| fields[5].to_owned())
                })
                .collect()
        };
        wait_for("the keepalive timer on the daemon's side", || async {
            let timers = timers();
            (!timers.is_empty() && timers.iter().all(|t| t.starts_with("02:"))).then_some(())
        })
        .await;
        daemon.shutdown().await;
    })
    .await
}

/// The descriptors this test process holds without close-on-exec (its own inheritance, which
/// the daemon in it passes on like any other program).
fn inheritable_fds() -> Vec<String> {
    std::fs::read_dir("/proc/self/fdinfo")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let info = std::fs::read_to_string(entry.path()).ok()?;
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
            let cloexec = u32::from_str_radix(flags, 8).ok()? & 0o2_000_000 != 0;
            (!cloexec).then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}

/// An agent inherits stdin, stdout and stderr and nothing the daemon opened: no libzmq
/// descriptor (its epoll and eventfds were inheritable before the build defined the platform's
/// close-on-exec features), no store file, no listener.
#[tokio::test]
async fn agents_inherit_no_descriptor_of_the_daemon() {
    within(async {
        let ours = inheritable_fds();
        let daemon = TestDaemon::start().await;
        let client = daemon.client().await;
        let agent = client.spawn(sh("exec ls -l /proc/self/fd/")).await.unwrap();
        client.wait(&agent.id.to_string(), None).await.unwrap();
        let listed = text(&all_records(&client, &agent).await);
        // `ls -l`: `… 64 Dec  2 10:56 FD -> TARGET`. Besides 0-2, `ls` reads the directory
        // through a descriptor of its own.
        let foreign: Vec<&str> = listed
            .lines()
            .filter(|line| line.contains(" -> "))
            .filter(|line| {
                let (head, target) = line.split_once(" -> ").unwrap_or((line, ""));
                let fd = head.rsplit(' ').next().unwrap_or("");
                !["0", "1", "2"].contains(&fd)
                    && !target.starts_with("/proc/")
                    && !ours.iter().any(|o| o == fd)
            })
            .collect();
        assert!(foreign.is_empty(), "{foreign:?} in\n{listed}");
        daemon.shutdown().await;
    })
    .await
}
