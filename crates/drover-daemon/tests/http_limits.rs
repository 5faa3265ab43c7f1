//! HTTP connections are bounded: a slow request head is cut off, an idle keep-alive connection is
//! closed, the number of open connections is capped, and protocol-level refusals (400, 414, 431)
//! carry the JSON error body. Real sockets against the real daemon.

mod support;

use std::time::{Duration, Instant};

use drover_daemon::HttpLimits;
use support::{parse_head, parse_response, request_without_token, within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn limits(tune: impl FnOnce(&mut HttpLimits)) -> impl FnOnce(&mut drover_daemon::Config) {
    move |config| {
        let mut limits = HttpLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            ..HttpLimits::default()
        };
        tune(&mut limits);
        config.http_limits = limits;
    }
}

/// Read until the server closes; the bytes.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_head_sent_one_byte_a_second_is_cut_off_at_the_header_timeout() {
    within(async {
        let daemon =
            Daemon::start_with(limits(|l| l.header_timeout = Duration::from_secs(2))).await;
        let stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let head = format!(
            "GET /v1/health HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
            daemon.addr, daemon.token
        );
        let started = Instant::now();
        let trickle = tokio::spawn(async move {
            let mut sent = 0;
            for byte in head.as_bytes() {
                if write.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                // The pace is what is under test.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (sent, head.len())
        });
        let mut raw = Vec::new();
        let _ = read.read_to_end(&mut raw).await;
        let elapsed = started.elapsed();
        trickle.abort();
        assert!(
            raw.is_empty(),
            "no answer to a head that never completed: {raw:?}"
        );
        assert!(
            elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
            "closed after {elapsed:?}, the timeout is 2 s"
        );
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_but_a_long_request_is_not() {
    within(async {
        let daemon =
            Daemon::start_with(limits(|l| l.idle_timeout = Duration::from_millis(500))).await;
        let id = daemon.spawn(&["sleep", "100"]).await;
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        // A request that takes three times the idle timeout is in progress, not idle.
        let head = format!(
            "GET /v1/agents/{id}/wait?timeout_ms=1500 HTTP/1.1\r\nHost: {}\r\n\
             Authorization: Bearer {}\r\n\r\n",
            daemon.addr, daemon.token
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (status, headers, start) = loop {
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed during a request in progress");
            raw.extend_from_slice(&buf[..n]);
            if let Some(head) = parse_head(&raw) {
                break head;
            }
        };
        assert_eq!(status, 504, "wait timed out and answered");
        let length: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().expect("length"))
            .expect("content-length");
        while raw.len() < start + length {
            let n = stream.read(&mut buf).await.expect("read body");
            assert!(n > 0);
            raw.extend_from_slice(&buf[..n]);
        }
        // Now idle, the connection is closed by the daemon.
        let answered = Instant::now();
        let rest = read_until_closed(&mut stream).await;
        let idle = answered.elapsed();
        assert!(rest.is_empty(), "{rest:?}");
        assert!(
            idle >= Duration::from_millis(400) && idle < Duration::from_secs(5),
            "closed after {idle:?} idle, the timeout is 500 ms"
        );
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_slots_come_back() {
    within(async {
        let daemon = Daemon::start_with(limits(|l| l.max_connections = 2)).await;
        let first = TcpStream::connect(daemon.addr).await.expect("connect");
        let _second = TcpStream::connect(daemon.addr).await.expect("connect");
        let mut third = TcpStream::connect(daemon.addr).await.expect("connect");
        let refused = parse_response(&read_until_closed(&mut third).await);
        assert_eq!(refused.status, 429);
        assert_eq!(refused.error_code(), "limit_reached");
        assert_eq!(refused.header("connection"), Some("close"));
        drop(first);
        support::wait_for("a slot to come back", || async {
            let mut probe = TcpStream::connect(daemon.addr).await.expect("connect");
            let head = format!(
                "GET /v1/health HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
                 Connection: close\r\n\r\n",
                daemon.addr, daemon.token
            );
            let _ = probe.write_all(head.as_bytes()).await;
            let raw = read_until_closed(&mut probe).await;
            parse_head(&raw).is_some_and(|(status, _, _)| status == 200)
        })
        .await;
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn protocol_refusals_carry_the_json_error_body() {
    within(async {
        let daemon = Daemon::start().await;
        // A malformed request line: hyper's own 400, with our body.
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        stream
            .write_all(b"NOT A REQUEST\r\n\r\n")
            .await
            .expect("send");
        let bad = parse_response(&read_until_closed(&mut stream).await);
        assert_eq!(bad.status, 400);
        assert_eq!(bad.error_code(), "bad_request");

        // A head over 64 KiB: 431.
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let mut head = format!(
            "GET /v1/health HTTP/1.1\r\nHost: {}\r\nX-Big: ",
            daemon.addr
        )
        .into_bytes();
        head.resize(65 * 1024, b'a');
        stream.write_all(&head).await.expect("send");
        let big = parse_response(&read_until_closed(&mut stream).await);
        assert_eq!(big.status, 431);
        assert_eq!(big.error_code(), "too_large");
        // A whole head over 64 KiB, arriving in one piece: 431 too, not routed.
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let mut head = format!(
            "GET /v1/health HTTP/1.1\r\nHost: {}\r\nX-Big: ",
            daemon.addr
        )
        .into_bytes();
        head.resize(100_000, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        stream.write_all(&head).await.expect("send");
        let whole = parse_response(&read_until_closed(&mut stream).await);
        assert_eq!(whole.status, 431);
        assert_eq!(whole.error_code(), "too_large");

        // A URI over 8 KiB: 414, before any credential is asked for.
        let path = format!("/v1/agents?label={}", "x".repeat(9 * 1024));
        let long = request_without_token(daemon.addr, "GET", &path, &[], b"").await;
        assert_eq!(long.status, 414);
        assert_eq!(long.error_code(), "too_large");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_tls_handshake_that_never_finishes_is_dropped() {
    within(async {
        let daemon = Daemon::start_with(|config| {
            config.http = "0.0.0.0:0".into();
            limits(|l| l.tls_handshake_timeout = Duration::from_millis(500))(config);
        })
        .await;
        assert!(daemon.tls.is_some(), "a non-loopback bind is TLS");
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        // The first bytes of a ClientHello record, and then nothing.
        stream.write_all(&[0x16, 0x03, 0x01]).await.expect("send");
        let started = Instant::now();
        let raw = read_until_closed(&mut stream).await;
        let elapsed = started.elapsed();
        assert!(raw.is_empty(), "{raw:?}");
        assert!(
            elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(5),
            "dropped after {elapsed:?}, the timeout is 500 ms"
        );
        daemon.stop().await;
    })
    .await
}

/// A second host: a network namespace joined to this one by a veth pair, so connections can
/// come from an address that is not loopback. CI runs as root (`ip` is iproute2).
struct OtherHost {
    netns: String,
    here_if: String,
    /// This host's end of the link; the other host is `.2` of the same /30.
    here: std::net::Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2; scripts/setup-test-env installs it)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl OtherHost {
    fn new() -> OtherHost {
        let id = std::process::id() % 100_000;
        let netns = format!("dhl{id}");
        let here_if = format!("dhh{id}");
        let there_if = format!("dht{id}");
        let here = std::net::Ipv4Addr::new(10, 200 + (id % 50) as u8, (id / 50 % 250) as u8, 1);
        let there =
            std::net::Ipv4Addr::new(here.octets()[0], here.octets()[1], here.octets()[2], 2);
        ip(&["netns", "add", &netns]);
        let host = OtherHost {
            netns,
            here_if,
            here,
        };
        ip(&[
            "link",
            "add",
            &host.here_if,
            "type",
            "veth",
            "peer",
            "name",
            &there_if,
            "netns",
            &host.netns,
        ]);
        ip(&["addr", "add", &format!("{here}/30"), "dev", &host.here_if]);
        ip(&["link", "set", &host.here_if, "up"]);
        ip(&[
            "-n",
            &host.netns,
            "addr",
            "add",
            &format!("{there}/30"),
            "dev",
            &there_if,
        ]);
        ip(&["-n", &host.netns, "link", "set", &there_if, "up"]);
        ip(&["-n", &host.netns, "link", "set", "lo", "up"]);
        host
    }

    /// A TCP connection to `addr` made from the other host (a thread enters its namespace; the
    /// socket stays there).
    fn connect(&self, addr: std::net::SocketAddr) -> TcpStream {
        let path = format!("/run/netns/{}", self.netns);
        let stream = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            std::net::TcpStream::connect(addr).expect("connect from the other host")
        })
        .join()
        .expect("connecting thread");
        stream.set_nonblocking(true).expect("non-blocking");
        TcpStream::from_std(stream).expect("a tokio stream")
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the veth pair, and with it this one.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
    }
}

/// `curl` of `/v1/health` over TLS at `addr` (the certificate names `localhost`), from the other
/// host when `from` is given: whether it got a 200.
async fn health_over_tls(
    daemon: &Daemon,
    addr: std::net::SocketAddr,
    from: Option<&OtherHost>,
) -> bool {
    let cert = daemon.state_dir.join("tls/cert.pem");
    let mut command = match from {
        Some(host) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", &host.netns, "curl"]);
            c
        }
        None => tokio::process::Command::new("curl"),
    };
    let out = command
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(&cert)
        .args([
            "--resolve",
            &format!("localhost:{}:{}", addr.port(), addr.ip()),
        ])
        .args(["-H", &format!("Authorization: Bearer {}", daemon.token)])
        .arg(format!("https://localhost:{}/v1/health", addr.port()))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run curl");
    out.status.success() && out.stdout == b"200"
}

#[tokio::test]
async fn one_remote_address_gets_at_most_its_share_of_the_connections() {
    within(async {
        let host = OtherHost::new();
        let daemon = Daemon::start_with(|config| {
            config.http = "0.0.0.0:0".into();
            config.http_limits.max_per_peer = 2;
        })
        .await;
        let here = std::net::SocketAddr::from((host.here, daemon.addr.port()));
        // Two connections from the other host that never start their TLS handshake.
        let first = host.connect(here);
        let second = host.connect(here);
        // A third from there is closed at once, before any TLS byte: a read sees the end.
        let mut third = host.connect(here);
        let mut buf = [0u8; 16];
        let n = third.read(&mut buf).await.expect("read");
        assert_eq!(
            n, 0,
            "the third connection from one address is closed unanswered"
        );
        assert!(
            !health_over_tls(&daemon, here, Some(&host)).await,
            "a real request from the capped address is refused too"
        );
        // Another address is served meanwhile: this host's own end of the link, and loopback,
        // which is never capped per address (three idle loopback connections first).
        assert!(health_over_tls(&daemon, here, None).await);
        let loopback: Vec<TcpStream> = hold_connections(daemon.addr, 3).await;
        let local = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.addr.port()));
        assert!(health_over_tls(&daemon, local, None).await);
        // A slot given back is the address's again.
        drop(first);
        support::wait_for("the address's slot to come back", || async {
            health_over_tls(&daemon, here, Some(&host)).await
        })
        .await;
        // Held handshakes would hold up the shutdown until their timeout.
        drop((second, third, loopback));
        daemon.stop().await;
    })
    .await
}

/// `n` plain TCP connections to `addr`.
async fn hold_connections(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    held
}

/// `request` (a whole HTTP/1.1 request) on a fresh connection; the raw bytes until the server
/// closes, or `None` if it is still open when the response has come (keep-alive).
async fn send_and_watch(addr: std::net::SocketAddr, request: &str) -> (Vec<u8>, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // A complete response is there when its body (content-length) is.
        if let Some((_, _, body_at)) = parse_head(&raw) {
            let head = String::from_utf8_lossy(&raw[..body_at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if raw.len() >= body_at + length {
                // Closed, or kept: a second request on it tells which.
                let again = format!("GET /v1/health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                let kept = stream.write_all(again.as_bytes()).await.is_ok()
                    && matches!(stream.read(&mut buf).await, Ok(n) if n > 0);
                return (raw, kept);
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return (raw, false),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_public_page_keeps_no_connection_for_a_peer_without_a_credential() {
    within(async {
        let daemon = Daemon::start_with(limits(|_| {})).await;
        let addr = daemon.addr;
        for path in ["/login", "/", "/ui/app.js"] {
            let anonymous = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
            let (raw, kept) = send_and_watch(addr, &anonymous).await;
            let (status, _, _) = parse_head(&raw).expect("a response");
            assert_eq!(status, 200, "{path}");
            assert!(!kept, "{path} without a credential closes the connection");
            let with_token = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\r\n",
                daemon.token
            );
            let (raw, kept) = send_and_watch(addr, &with_token).await;
            assert_eq!(parse_head(&raw).expect("a response").0, 200);
            assert!(kept, "{path} with a credential keeps the connection");
        }
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_login_body_that_trickles_is_cut_off_at_the_header_timeout() {
    within(async {
        let daemon =
            Daemon::start_with(limits(|l| l.header_timeout = Duration::from_secs(1))).await;
        let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
        let head = format!(
            "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 200\r\n\r\n{{\"tok",
            daemon.addr
        );
        stream.write_all(head.as_bytes()).await.expect("send");
        let answer = parse_response(&read_until_closed(&mut stream).await);
        assert_eq!(answer.status, 408);
        assert_eq!(answer.error_code(), "timeout");
        daemon.stop().await;
    })
    .await
}

#[tokio::test]
async fn a_peer_that_stops_reading_a_stream_loses_its_connection() {
    within(async {
        let daemon = Daemon::start_with(limits(|l| l.send_timeout = Duration::from_secs(2))).await;
        // 24 MB of stored output: more than any socket buffers hold.
        let script = format!("yes {} | head -n 300000", "7".repeat(79));
        let agent = daemon.spawn(&["sh", "-c", &script]).await;
        daemon.wait_exit(&agent).await;
        let head = format!(
            "GET /v1/agents/{agent}/logs?follow=true HTTP/1.1\r\nHost: {}\r\n\
             Accept: text/event-stream\r\nAuthorization: Bearer {}\r\n\r\n",
            daemon.addr, daemon.token
        );
        // A slow reader (about 160 KB/s, far behind the stream) is still reading: never cut off,
        // though the daemon's writes wait on it for three send timeouts.
        let mut slow = TcpStream::connect(daemon.addr).await.expect("connect");
        slow.write_all(head.as_bytes()).await.expect("send");
        let mut buf = vec![0u8; 16 * 1024];
        let started = std::time::Instant::now();
        let mut taken = 0usize;
        while started.elapsed() < Duration::from_secs(6) {
            let n = slow.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "the slow reader's stream was cut after {taken} bytes"
            );
            taken += n;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(daemon.metric("drover_http_stalled_total").await, 0);
        drop(slow);
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .set_recv_buffer_size(4096)
            .expect("small receive buffer");
        let mut stream = socket.connect(daemon.addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("send");
        // Read nothing until the daemon has given up on this peer.
        support::wait_for("the stalled stream to be closed", || async {
            daemon.metric("drover_http_stalled_total").await == 1
        })
        .await;
        // What the buffers held, then the end: never the stream's `exit`.
        let raw = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{}",
            &text[..text.len().min(200)]
        );
        assert!(
            !text.contains("event: exit"),
            "the stream was cut off before its end"
        );
        // A reader that reads gets all of it, and its exit.
        let mut whole = support::SseClient::connect(
            daemon.addr,
            &format!("/v1/agents/{agent}/logs?follow=true"),
            &[],
        )
        .await;
        // Every line, counted by its last record: a line the capture read in two pieces (the
        // partial-line flush on a busy machine) is two records, the first `partial`.
        let mut lines = 0u64;
        loop {
            let event = whole.next().await.expect("the stream runs to its exit");
            match event.event.as_str() {
                "exit" => break,
                "log" if event.json()["partial"] == false => lines += 1,
                "log" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        assert_eq!(lines, 300_000);
        assert_eq!(daemon.metric("drover_http_stalled_total").await, 1);
        daemon.stop().await;
    })
    .await
}
