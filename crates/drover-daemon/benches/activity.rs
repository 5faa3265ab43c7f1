//! Agent-awareness cost: capture throughput of a 1 000 000-line claude stream-json transcript
//! through the real daemon, read by the `claude-stream-json` parser, beside the same bytes
//! captured by a `command` agent without a parser, in the same run: 21 pairs, the order
//! alternating, and the median of the pairs' ratios.
//! The transcript cycles the assistant, tool result and final text lines of
//! `drover-agent/tests/fixtures/real/claude-tool.jsonl` (a recorded claude-code 2.1.197 run).
//! Also the parser alone, in memory, for scale.
//!
//! `cargo bench -p drover-daemon --bench activity`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use drover_agent::{ParserKind, Tracker, Update};
use drover_client::Client;
use drover_daemon::Config;
use drover_proto::AgentSpec;

mod raw;

const LINES: usize = 1_000_000;
/// Side-by-side pairs of captures (one without the parser, one with).
const PAIRS: usize = 21;

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run());
}

/// The transcript's lines that repeat in a long session (not the init line or the result).
fn body_lines() -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../drover-agent/tests/fixtures/real/claude-tool.jsonl");
    let bytes = std::fs::read(path).unwrap();
    let lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    lines[1..lines.len() - 1].to_vec()
}

async fn run() {
    let dir = tempfile::tempdir().unwrap();
    let body = body_lines();
    let transcript = dir.path().join("transcript.jsonl");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&transcript).unwrap());
    let mut bytes = 0usize;
    for i in 0..LINES {
        let line = &body[i % body.len()];
        bytes += line.len();
        file.write_all(line).unwrap();
    }
    file.flush().unwrap();
    drop(file);
    println!(
        "transcript: {LINES} lines, {:.0} MB (mean {} bytes a line)",
        bytes as f64 / 1e6,
        bytes / LINES
    );

    // The parser alone.
    let data = std::fs::read(&transcript).unwrap();
    let start = Instant::now();
    let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, false);
    let mut update = Update::default();
    for line in data.split_inclusive(|b| *b == b'\n') {
        tracker.feed(line, false, &mut update);
        update.events.clear();
    }
    let parse = start.elapsed();
    assert_eq!(tracker.activity().ignored_lines, 0);
    println!(
        "parser alone, in memory          : {:>10.0} lines/s ({:.0} MB/s)",
        LINES as f64 / parse.as_secs_f64(),
        bytes as f64 / 1e6 / parse.as_secs_f64()
    );
    drop(data);

    // A `claude` on PATH that prints the transcript.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let fake = bin.join("claude");
    std::fs::write(&fake, "#!/bin/sh\nexec cat \"$DROVER_BENCH_TRANSCRIPT\"\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut config = Config::ephemeral(dir.path().join("state"));
    config.store.agent_budget = 64 << 20;
    let (addresses, options, stop, daemon) = raw::daemon(config).await;
    let client = Client::connect_with(&addresses.control, options)
        .await
        .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let env = [
        ("PATH".to_owned(), path),
        (
            "DROVER_BENCH_TRANSCRIPT".to_owned(),
            transcript.display().to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let plain = AgentSpec {
        argv: vec!["cat".into(), transcript.display().to_string()],
        env: std::collections::BTreeMap::clone(&env),
        ..AgentSpec::default()
    };
    let parsed = AgentSpec {
        backend: Some("claude".into()),
        task: Some("bench".into()),
        env,
        ..AgentSpec::default()
    };
    // Pairs of captures, the order alternating, each pair's ratio taken at once: the VM's
    // speed drifts by more than the parser's cost within a minute, so a ratio of two bests
    // (possibly minutes apart) says less than the median of ratios measured side by side.
    let mut best = [Duration::MAX; 2];
    let mut ratios = Vec::with_capacity(PAIRS);
    for pair in 0..PAIRS {
        let mut took = [Duration::ZERO; 2];
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let spec = if i == 0 { &plain } else { &parsed };
            took[i] = capture(&client, spec.clone(), i == 1).await;
            best[i] = best[i].min(took[i]);
        }
        ratios.push(took[0].as_secs_f64() / took[1].as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    let rate = |d: Duration| LINES as f64 / d.as_secs_f64();
    println!(
        "capture, command agent (no parser): {:>10.0} lines/s ({:.0} MB/s), best of {PAIRS}",
        rate(best[0]),
        bytes as f64 / 1e6 / best[0].as_secs_f64()
    );
    println!(
        "capture, claude agent (parser)    : {:>10.0} lines/s ({:.0} MB/s), best of {PAIRS}",
        rate(best[1]),
        bytes as f64 / 1e6 / best[1].as_secs_f64()
    );
    println!(
        "ratio parser / no parser          : {:>10.2} median of {PAIRS} side-by-side pairs (range {:.2}-{:.2}; ratio of the bests {:.2}) (target >= 0.80)",
        ratios[PAIRS / 2],
        ratios[0],
        ratios[PAIRS - 1],
        best[0].as_secs_f64() / best[1].as_secs_f64()
    );
    let _ = stop.send(());
    let _ = daemon.await;
}

/// Spawn, wait for the end (every record is stored before an agent is reported ended), remove.
async fn capture(client: &Client, spec: AgentSpec, parsed: bool) -> Duration {
    let start = Instant::now();
    let agent = client.spawn(spec).await.unwrap();
    let id = agent.id.to_string();
    let ended = client
        .wait(&id, Some(Duration::from_secs(600)))
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(ended.status.exit_code(), Some(0), "{ended:?}");
    if parsed {
        let activity = ended.activity.expect("activity");
        assert_eq!(activity.ignored_lines, 0);
        assert!(activity.turns as usize >= LINES / 3, "{}", activity.turns);
    }
    client.remove(&id).await.unwrap();
    took
}
