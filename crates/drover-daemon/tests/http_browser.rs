//! A real browser follows a log: headless Chromium loads `tests/browser/follow.html`, whose
//! `EventSource` reads the daemon's SSE stream; the dumped DOM must show every line, in order,
//! and the exit.
//!
//! The daemon sends no CORS headers (a loopback daemon without authentication must not be
//! readable by any web page the user happens to open), so the page has to come from the same
//! origin as the API. The test puts a tiny TCP front in front of the daemon: it answers
//! `GET /follow.html` itself and relays every other connection, byte for byte, to the daemon.
//!
//! The page logs in first with a `read` token (`POST /login`), so the stream is authenticated by
//! the HttpOnly cookie: this is also the browser login flow, in a real browser.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Without it this test
//! fails, saying so: it is never skipped.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use support::{within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const CHROMIUM: &str = "/usr/bin/chromium";
const PAGE: &str = include_str!("browser/follow.html");

/// Serve the page and relay everything else to `daemon`; the front's address.
async fn start_front(daemon: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let addr = listener.local_addr().expect("front address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(serve_front(client, daemon));
        }
    });
    addr
}

async fn serve_front(mut client: TcpStream, daemon: SocketAddr) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"GET /follow.html") {
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
            PAGE.len()
        );
        let _ = client.write_all(response.as_bytes()).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(daemon).await else {
        return;
    };
    if upstream.write_all(&head).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

#[tokio::test]
async fn chromium_event_source_gets_every_line_and_the_exit() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium); \
         .ci/run does"
    );
    within(async {
        let daemon = Daemon::start().await;
        let front = start_front(daemon.addr).await;
        let n = 100;
        // Still writing while the page loads, so the browser sees live lines, not only replay.
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                &format!("for i in $(seq 1 {n}); do echo line $i; sleep 0.01; done"),
            ])
            .await;
        let profile = tempfile::tempdir().expect("profile dir");
        let token = daemon.token(drover_proto::Role::Read, "browser");
        let url = format!("http://{front}/follow.html?agent={id}&token={token}");
        let run = tokio::process::Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--virtual-time-budget=20000")
            .arg("--dump-dom")
            .arg(&url)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(50), run)
            .await
            .expect("chromium finished within 50 s")
            .expect("chromium runs");
        let dom = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "chromium failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let expected: String = (1..=n).map(|i| format!("[{i}] line {i}\n")).collect();
        assert!(
            dom.contains(&expected),
            "the page does not show lines 1..={n} in order:\n{dom}"
        );
        assert!(
            dom.contains(&format!("exit state=exited code=0 lines={n}")),
            "the page did not see the exit:\n{dom}"
        );
        daemon.stop().await;
    })
    .await;
}
