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

use std::path::Path;
use std::time::Duration;

use support::{start_front, within, Daemon};

const CHROMIUM: &str = "/usr/bin/chromium";
const PAGE: &str = include_str!("browser/follow.html");

#[tokio::test]
async fn chromium_event_source_gets_every_line_and_the_exit() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium); \
         .ci/run does"
    );
    within(async {
        let daemon = Daemon::start().await;
        let front = start_front(daemon.addr, Some(("/follow.html", PAGE))).await;
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
