//! The parsers alone, in memory: lines/s and MB/s of each format's recorded tool-using
//! transcript, cycled to 1 000 000 lines, beside a bare newline split of the same bytes (the
//! least any reader of lines does) in the same run.
//!
//! `cargo bench -p drover-agent --bench parse`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use drover_agent::{ParserKind, Tracker, Update};

const LINES: usize = 1_000_000;

fn corpus(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(format!("{name}.jsonl"));
    let bytes = std::fs::read(path).unwrap();
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    // The lines a long session repeats: not the first (init) or the last (result).
    let body = &lines[1..lines.len() - 1];
    let mut out = Vec::new();
    for i in 0..LINES {
        out.extend_from_slice(body[i % body.len()]);
    }
    out
}

fn main() {
    // `cargo bench -p drover-agent --bench parse -- claude`: only the formats named so.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, kind) in [
        ("claude-tool", ParserKind::ClaudeStreamJson),
        ("codex-tool", ParserKind::CodexJson),
        ("gemini-tool", ParserKind::GeminiStreamJson),
        ("opencode-tool", ParserKind::OpencodeJson),
    ] {
        if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
            continue;
        }
        let data = corpus(name);
        let start = Instant::now();
        let mut n = 0usize;
        for line in data.split_inclusive(|b| *b == b'\n') {
            n += usize::from(line.last() == Some(&b'\n'));
        }
        let split = start.elapsed();
        assert_eq!(n, LINES);
        let start = Instant::now();
        let mut tracker = Tracker::new(kind, false);
        let mut update = Update::default();
        for line in data.split_inclusive(|b| *b == b'\n') {
            tracker.feed(line, false, &mut update);
            update.events.clear();
        }
        let parse = start.elapsed();
        assert_eq!(tracker.activity().ignored_lines, 0, "{name}");
        let mb = data.len() as f64 / 1e6;
        println!(
            "{name:<14} {:>4} B/line  split {:>6.0} MB/s   parse {:>8.0} lines/s {:>6.0} MB/s",
            data.len() / LINES,
            mb / split.as_secs_f64(),
            LINES as f64 / parse.as_secs_f64(),
            mb / parse.as_secs_f64()
        );
    }
}
