//! The dashboard in a real browser: headless Chromium (Debian's `/usr/bin/chromium`) driven by
//! `playwright-core` from `tests/browser/dashboard.mjs`, against this daemon. The script logs in
//! with a control token and with a read token and asserts every step (see the script); this
//! test also checks the page's headers and that the page and its assets need no credential
//! while every data route still does. `tests/browser/session.mjs` takes the page through network
//! outages and ended sessions; `tests/browser/bounds.mjs` takes the fleet table through a burst
//! of agents and a log pane past its byte bound.
//!
//! `scripts/setup-test-env` installs Chromium, Node.js and `playwright-core` (`npm ci` in
//! `tests/browser`); without them this test fails, saying so: it is never skipped.

mod support;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{request_without_token, start_front, wait_for, within, Daemon};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Lines the followed agent prints before the page opens its log.
const LINES: u64 = 200_000;

/// One browser test at a time. Run together, the six headless Chromiums and their daemons
/// shared two cores, and the 200,000-line follow once took longer than its 90 s (CI, twice):
/// each test's bounds are for its own browser, not for six. Taken before a test's clock starts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The browser scripts' directory, once Chromium and playwright-core are known to be there.
fn browser() -> PathBuf {
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
    browser_dir
}

/// Run one browser test: alone ([`ONE_BROWSER`], taken before its clock starts), with Chromium
/// and playwright-core checked, within `limit`. `test` gets the browser scripts' directory.
async fn browser_test<F, Fut>(limit: Duration, test: F)
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = ()>,
{
    let _one = ONE_BROWSER.lock().await;
    let browser_dir = browser();
    tokio::time::timeout(limit, test(browser_dir))
        .await
        .unwrap_or_else(|_| panic!("the browser test finished within {limit:?}"));
}

/// The arguments every page script starts with: the page's address (a relay in front of the
/// daemon, with the switches `/__cut`, `/__down`, `/__up`), the daemon's own, and its control
/// token.
async fn page_args(daemon: &Daemon) -> Vec<String> {
    let front = start_front(daemon.addr, None).await;
    vec![
        format!("http://{front}"),
        daemon.http_url.clone(),
        daemon.token.clone(),
    ]
}

/// The screenshots a script took are there (non-empty); with `DROVER_SCREENSHOTS=docs` they
/// replace the committed ones.
fn keep_shots(dir: &Path, shots: &[&str]) {
    for shot in shots {
        let path = dir.join(shot);
        assert!(
            path.metadata().map(|m| m.len() > 1000).unwrap_or(false),
            "{shot}"
        );
        if let Ok(target) = std::env::var("DROVER_SCREENSHOTS") {
            std::fs::copy(&path, Path::new(&target).join(shot)).expect("copy screenshot");
        }
    }
}

/// Run a browser script with `node` and require it to end saying "every step passed".
async fn run_script(browser_dir: &Path, script: &str, args: &[String], limit: Duration) {
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join(script))
        .args(args)
        .current_dir(browser_dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, run)
        .await
        .unwrap_or_else(|_| panic!("{script} finished within {limit:?}"))
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("every step passed"),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Its figures, for `--nocapture`.
    print!("{stdout}");
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy_and_no_data() {
    within(async {
        let daemon = Daemon::start().await;
        for (path, kind) in [
            ("/", "text/html"),
            ("/ui/app.js", "text/javascript"),
            ("/ui/app.css", "text/css"),
            ("/ui/transcript.js", "text/javascript"),
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
    // Its own bound, longer than `within`'s: a browser starts and reads 200,000 lines.
    browser_test(Duration::from_secs(240), |browser_dir| async move {
        let daemon = Daemon::start().await;
        let id = daemon
            .spawn(&[
                "sh",
                "-c",
                &format!("seq -f 'line %.0f' 1 {LINES}; exec sleep 1000"),
            ])
            .await;
        let read = daemon.token(drover_proto::Role::Read, "dashboard reader");
        let shots = tempfile::tempdir().expect("screenshots dir");
        let mut args = page_args(&daemon).await;
        args.extend([
            read,
            id,
            LINES.to_string(),
            shots.path().display().to_string(),
        ]);
        run_script(
            &browser_dir,
            "dashboard.mjs",
            &args,
            Duration::from_secs(200),
        )
        .await;
        keep_shots(
            shots.path(),
            &["dashboard-fleet.png", "dashboard-agent.png"],
        );
        daemon.stop().await;
    })
    .await;
}

/// What AI agents do, in the browser: agents of the `claude` backend (the fake agent CLI of
/// `tests/agents/fake-agent`, replaying transcripts recorded from the real claude) show their
/// phase, turns and cost in the fleet table, the one that needs a person sorts first and is
/// marked, the agent pane shows the activity and renders the log as a transcript, and
/// "Continue" starts an agent resuming the same session. `tests/browser/agents.mjs` drives it.
#[tokio::test]
async fn the_dashboard_shows_what_ai_agents_do_in_chromium() {
    browser_test(Duration::from_secs(180), |browser_dir| async move {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = tempfile::tempdir().expect("bin dir");
        std::os::unix::fs::symlink(
            root.join("tests/agents/fake-agent"),
            bin.path().join("claude"),
        )
        .expect("symlink");
        let daemon = Daemon::start().await;
        let shots = tempfile::tempdir().expect("screenshots dir");
        let mut args = page_args(&daemon).await;
        args.extend([
            bin.path().display().to_string(),
            root.join("crates/drover-agent/tests/fixtures/real")
                .display()
                .to_string(),
            shots.path().display().to_string(),
        ]);
        run_script(&browser_dir, "agents.mjs", &args, Duration::from_secs(120)).await;
        keep_shots(shots.path(), &["dashboard-activity.png"]);
        daemon.stop().await;
    })
    .await;
}

/// The page through outages and ended sessions (`tests/browser/session.mjs`): an outage before
/// any event reached the page, resumed without a listing; a logout in another tab, and a session
/// ended during an outage, each bringing the login form back, after which logging in makes the
/// table live again; and the "Log out" button, after which the daemon refuses the cookie.
#[tokio::test]
async fn the_dashboard_rides_out_outages_and_returns_to_login_when_its_session_ends_in_chromium() {
    browser_test(Duration::from_secs(180), |browser_dir| async move {
        let daemon = Daemon::start().await;
        // Running before the page opens, so no event reaches the page before the first outage.
        let victim = daemon.spawn(&["sleep", "1000"]).await;
        wait_for("the victim to run", || async {
            daemon.get(&format!("/v1/agents/{victim}")).await.json()["agent"]["state"] == "running"
        })
        .await;
        let mut args = page_args(&daemon).await;
        args.push(victim);
        run_script(&browser_dir, "session.mjs", &args, Duration::from_secs(150)).await;
        daemon.stop().await;
    })
    .await;
}

/// A log pane whose stream drops and resumes past retention says once which records are gone,
/// not also that they are missing (`tests/browser/retention.mjs`).
#[tokio::test]
async fn a_log_pane_resumed_past_retention_says_once_what_is_gone_in_chromium() {
    browser_test(Duration::from_secs(120), |browser_dir| async move {
        let daemon = Daemon::start_with(|config| {
            config.store.segment_bytes = 1024;
            // The smallest budget a daemon takes; the agent prints about 73 KB.
            config.store.agent_budget = 64 * 1024;
        })
        .await;
        let args = page_args(&daemon).await;
        run_script(
            &browser_dir,
            "retention.mjs",
            &args,
            Duration::from_secs(90),
        )
        .await;
        daemon.stop().await;
    })
    .await;
}

/// The page's bounds under load (`tests/browser/bounds.mjs`): a burst of 100 agents while the
/// table shows 1,000 renders the table far fewer times than events arrive and builds rows only
/// for the new agents, ending exactly as the daemon's listing; a log pane following 16 KB lines
/// past its 32 MiB bound keeps only the newest lines within it and says how many it let go.
#[tokio::test]
async fn the_dashboard_coalesces_table_renders_and_bounds_a_log_pane_by_bytes_in_chromium() {
    browser_test(Duration::from_secs(240), |browser_dir| async move {
        let daemon = Daemon::start().await;
        let args = page_args(&daemon).await;
        run_script(&browser_dir, "bounds.mjs", &args, Duration::from_secs(200)).await;
        daemon.stop().await;
    })
    .await;
}
