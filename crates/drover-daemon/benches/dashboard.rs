//! Dashboard benchmark: in headless Chromium (through `playwright-core`, as the dashboard test
//! drives it), the time from a line written by an agent to it shown in the page at 1,000
//! lines/s beside a bare `EventSource` in the same page (no rendering) measured in the same
//! run; frames per second while the page follows 10,000 lines/s; the page's JS heap before and
//! after it holds 1,000,000 lines.
//!
//! `scripts/setup-test-env`, then `cargo bench -p drover-daemon --bench dashboard`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use drover_client::Client;
use drover_daemon::Config;
use drover_proto::{AgentSpec, Role, StdinMode};

mod raw;

const PACED: u64 = 1_000;
const FAST: u64 = 10_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--writer") {
        raw::writer(args[2].parse().unwrap(), args[3].parse().unwrap());
        return;
    }
    tokio::runtime::Runtime::new().unwrap().block_on(run());
}

/// A paced writer that starts when it reads `go`.
fn paced(rate: u64, count: u64) -> AgentSpec {
    let me = std::env::current_exe().unwrap();
    AgentSpec {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!("read go; exec '{}' --writer {rate} {count}", me.display()),
        ],
        stdin: StdinMode::Pipe,
        ..AgentSpec::default()
    }
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::ephemeral(dir.path());
    config.store.agent_budget = 1 << 30;
    let state_dir = config.state_dir.clone();
    let (addresses, options, stop, daemon) = raw::daemon(config).await;
    let client = Client::connect_with(&addresses.control, options)
        .await
        .unwrap();
    let token = drover_daemon::token::create(&state_dir, Role::Control, "bench")
        .unwrap()
        .secret;
    let mut ids = Vec::new();
    for spec in [
        paced(PACED, 5_000),
        paced(PACED, 5_000),
        paced(FAST, 100_000),
    ] {
        ids.push(client.spawn(spec).await.unwrap().id.to_string());
    }
    let million = AgentSpec {
        argv: vec!["seq".into(), "1000000".into()],
        ..AgentSpec::default()
    };
    ids.push(client.spawn(million).await.unwrap().id.to_string());

    let browser = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let output = tokio::process::Command::new("node")
        .arg(browser.join("measure.mjs"))
        .arg(&addresses.http)
        .arg(&token)
        .args(&ids)
        .current_dir(&browser)
        .output()
        .await
        .expect("node runs (scripts/setup-test-env installs it)");
    assert!(
        output.status.success(),
        "measure.mjs failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let f = |key: &str| figures[key].as_f64().unwrap();
    println!("write → shown, {PACED} lines/s, 3000 live lines");
    println!(
        "  bare EventSource in the page  : p50 {:>6.1} ms   p99 {:>6.1} ms",
        f("bare_p50_ms"),
        f("bare_p99_ms")
    );
    println!(
        "  dashboard log view            : p50 {:>6.1} ms   p99 {:>6.1} ms",
        f("page_p50_ms"),
        f("page_p99_ms")
    );
    println!("\nfollowing {FAST} lines/s");
    println!(
        "  dashboard frames per second   : {:>6.1}",
        f("fps_at_10k_lines_s")
    );
    println!("\npage JS heap");
    println!(
        "  before / after 1,000,000 lines: {:>6.1} MiB / {:.1} MiB",
        f("heap_before_mib"),
        f("heap_after_1m_lines_mib")
    );
    for id in &ids {
        let _ = client.kill(id).await;
    }
    let _ = stop.send(());
    daemon.await.unwrap().unwrap();
}
