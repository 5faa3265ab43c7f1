//! The HTTP API refuses the user's own browser being turned against it: foreign web origins
//! (cross-site request forgery) and foreign host names (DNS rebinding).

mod support;

use support::{request, within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SPAWN: &[u8] = br#"{"spec": {"argv": ["sh", "-c", "echo pwned"]}}"#;

#[tokio::test]
async fn a_foreign_origin_cannot_spawn() {
    within(async {
        let daemon = Daemon::start().await;
        let response = request(
            daemon.addr,
            "POST",
            "/v1/agents",
            &[
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            SPAWN,
        )
        .await;
        assert_eq!(response.status, 401);
        assert_eq!(response.error_code(), "unauthorized");
        // Another loopback origin (a dev server on localhost:3000) is foreign too, even with a
        // valid token.
        let dev_server = request(
            daemon.addr,
            "POST",
            "/v1/agents",
            &[("Origin", "http://localhost:3000")],
            SPAWN,
        )
        .await;
        assert_eq!(dev_server.status, 401);
        // The daemon's own origin is fine.
        let ok = request(
            daemon.addr,
            "GET",
            "/v1/agents",
            &[("Origin", &format!("http://{}", daemon.addr))],
            b"",
        )
        .await;
        assert_eq!(ok.status, 200);
        assert_eq!(
            ok.json()["agents"].as_array().map(Vec::len),
            Some(0),
            "nothing was spawned"
        );
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_rebound_host_name_is_refused() {
    within(async {
        let daemon = Daemon::start().await;
        let mut stream = tokio::net::TcpStream::connect(daemon.addr).await.unwrap();
        let head = format!(
            "POST /v1/agents HTTP/1.1\r\nHost: evil.example:{}\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            daemon.addr.port(),
            SPAWN.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(SPAWN).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 401"), "{text}");
        assert!(text.contains("\"unauthorized\""), "{text}");
        let agents = daemon.get("/v1/agents").await.json();
        assert_eq!(agents["agents"].as_array().map(Vec::len), Some(0));
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn streams_beyond_the_maximum_are_refused_and_slots_come_back() {
    use support::SseClient;
    within(async {
        let daemon = Daemon::start_with(|config| config.max_streams = 1).await;
        let id = daemon.spawn(&["sleep", "100"]).await;
        let path = format!("/v1/agents/{id}/logs?follow=true");
        let sse = [("Accept", "text/event-stream")];
        let first = SseClient::connect(daemon.addr, &path, &sse).await;
        let refused = request(daemon.addr, "GET", &path, &sse, b"").await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.error_code(), "limit_reached");
        drop(first);
        support::wait_for("the slot to be released", || async {
            daemon.metric("drover_followers").await == 0
        })
        .await;
        let again = SseClient::connect(daemon.addr, &path, &sse).await;
        assert_eq!(again.header("content-type"), Some("text/event-stream"));
        daemon.stop().await;
    })
    .await
}

/// `GET /v1/health` with the token, this `Host` and `Origin`: the status.
async fn health_as(daemon: &Daemon, host: &str, origin: Option<&str>) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(daemon.addr)
        .await
        .expect("connect");
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let head = format!(
        "GET /v1/health HTTP/1.1\r\nHost: {host}\r\n{origin}Authorization: Bearer {}\r\n\
         Connection: close\r\n\r\n",
        daemon.token
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    support::parse_head(&raw).expect("a response").0
}

#[tokio::test]
async fn a_reverse_proxy_by_its_public_name_or_terminating_tls_is_served() {
    within(async {
        let daemon = Daemon::start_with(|config| {
            config.http_public_hosts = vec!["drover.example.com".into()];
        })
        .await;
        // The proxy's public name, passed through as Host, and the page's origin on it.
        let public = "drover.example.com";
        assert_eq!(health_as(&daemon, public, None).await, 200);
        let origin = "https://drover.example.com";
        assert_eq!(health_as(&daemon, public, Some(origin)).await, 200);
        // Other names are still refused; so is a public name given with another port.
        assert_eq!(health_as(&daemon, "evil.example", None).await, 401);
        assert_eq!(
            health_as(&daemon, "drover.example.com:8080", None).await,
            401
        );
        // A proxy terminating TLS in front of the plain listener: an https origin on the
        // request's own Host is the page's own.
        let local = format!("localhost:{}", daemon.addr.port());
        let https = format!("https://{local}");
        assert_eq!(health_as(&daemon, &local, Some(&https)).await, 200);
        let other_port = format!("https://localhost:{}", daemon.addr.port() + 1);
        assert_eq!(health_as(&daemon, &local, Some(&other_port)).await, 401);
        daemon.stop().await;
    })
    .await
}
