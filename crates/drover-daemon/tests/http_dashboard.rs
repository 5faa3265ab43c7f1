//! The dashboard in a real browser: headless Chromium (Debian's `/usr/bin/chromium`) driven by
//! `playwright-core` from `tests/browser/dashboard.mjs`, against this daemon. The script logs in
//! with a control token and with a read token and asserts every step (see the script); this
//! test also checks the page's headers and that the page and its assets need no credential
//! while every data route still does.
//!
//! `scripts/setup-test-env` installs Chromium, Node.js and `playwright-core` (`npm ci` in
//! `tests/browser`); without them this test fails, saying so: it is never skipped.

mod support;

use std::path::Path;
use std::time::Duration;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::{request_without_token, within, Daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const CHROMIUM: &str = "/usr/bin/chromium";
/// Lines the followed agent prints before the page opens its log.
const LINES: u64 = 200_000;

/// A relay in front of the daemon, so the test can cut the browser's connections: every
/// connection is relayed byte for byte, except `POST /__cut`, which drops every connection
/// relayed so far (as a network failure would) and answers 204.
async fn start_front(daemon: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind front");
    let addr = listener.local_addr().expect("front address");
    let relays: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let relays = Arc::clone(&relays);
            let relay = tokio::spawn(relay(client, daemon, Arc::clone(&relays)));
            relays.lock().expect("relays").push(relay.abort_handle());
        }
    });
    addr
}

async fn relay(mut client: TcpStream, daemon: SocketAddr, relays: Arc<Mutex<Vec<AbortHandle>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    if head.starts_with(b"POST /__cut ") {
        let cut: Vec<AbortHandle> = std::mem::take(&mut *relays.lock().expect("relays"));
        for relay in cut {
            relay.abort();
        }
        let _ = client
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .await;
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
async fn the_page_and_its_assets_are_served_with_a_strict_policy_and_no_data() {
    within(async {
        let daemon = Daemon::start().await;
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
        ] {
            let response = request_without_token(daemon.addr, "GET", path, &[], b"").await;
            assert_eq!(response.status, 200, "{path}: {}", response.text());
            assert!(
                response
                    .header("content-type")
                    .unwrap_or("")
                    .starts_with(kind),
                "{path}"
            );
            let policy = response.header("content-security-policy").unwrap_or("");
            assert!(
                policy.contains("script-src 'self'") && policy.contains("default-src 'none'"),
                "{path}: {policy}"
            );
            assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        }
        let missing = request_without_token(daemon.addr, "GET", "/ui/nothing.js", &[], b"").await;
        assert_eq!(missing.status, 404);
        // Data still needs a credential; the session route says which role one has.
        let anonymous = request_without_token(daemon.addr, "GET", "/v1/session", &[], b"").await;
        assert_eq!(anonymous.status, 401);
        let session = daemon.get("/v1/session").await;
        assert_eq!(session.json()["role"], "control");
        // Every answer, agent output as text included, forbids content sniffing.
        let id = daemon.spawn(&["echo", "<b>x</b>"]).await;
        daemon.wait_exit(&id).await;
        let text = daemon
            .get(&format!("/v1/agents/{id}/logs?format=text"))
            .await;
        assert_eq!(text.text(), "<b>x</b>\n");
        assert_eq!(text.header("x-content-type-options"), Some("nosniff"));
        let posted = request_without_token(daemon.addr, "POST", "/", &[], b"").await;
        assert_eq!(posted.status, 401, "only GET of the page is public");
        daemon.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_dashboard_follows_acts_and_hides_actions_from_readers_in_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package; scripts/setup-test-env does"
    );
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run scripts/setup-test-env (npm ci in {})",
        browser_dir.display()
    );
    // Its own bound, longer than `within`'s: a browser starts and reads 200,000 lines.
    let test = async {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                &format!("seq -f 'line %.0f' 1 {LINES}; exec sleep 1000"),
            ])
            .await;
        let read = daemon.token(drover_proto::Role::Read, "dashboard reader");
        let front = start_front(daemon.addr).await;
        let shots = tempfile::tempdir().expect("screenshots dir");
        let run = tokio::process::Command::new("node")
            .arg(browser_dir.join("dashboard.mjs"))
            .arg(format!("http://{front}"))
            .arg(&daemon.http_url)
            .arg(&daemon.token)
            .arg(&read)
            .arg(&id)
            .arg(LINES.to_string())
            .arg(shots.path())
            .current_dir(&browser_dir)
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(200), run)
            .await
            .expect("the browser script finished within 200 s")
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("every step passed"),
            "the browser script failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
        for shot in ["dashboard-fleet.png", "dashboard-agent.png"] {
            let path = shots.path().join(shot);
            assert!(
                path.metadata().map(|m| m.len() > 1000).unwrap_or(false),
                "{shot}"
            );
            // DROVER_SCREENSHOTS=docs refreshes the committed screenshots.
            if let Ok(dir) = std::env::var("DROVER_SCREENSHOTS") {
                std::fs::copy(&path, Path::new(&dir).join(shot)).expect("copy screenshot");
            }
        }
        daemon.stop().await;
    };
    tokio::time::timeout(Duration::from_secs(240), test)
        .await
        .expect("the dashboard test finished within 240 s");
}
