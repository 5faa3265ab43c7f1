//! The parsers against transcripts recorded from the real CLIs (`tests/fixtures/real/`, see
//! its README for versions, command lines and the mock model's script): the phase sequence,
//! turns, tokens, cost, session and attention each must produce, whole lines or cut into
//! pieces, and with garbage lines mixed in.

use std::path::PathBuf;

use drover_agent::{Ending, ParserKind, Tracker, Update};
use drover_proto::{Activity, AttentionReason, Phase, Tokens, Usd};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/real")
        .join(format!("{name}.jsonl"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The transcript's lines, each with its newline.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|b| *b == b'\n').collect()
}

/// The session id as the transcript's own lines state it (whichever field this CLI uses).
fn session_of(bytes: &[u8]) -> String {
    for line in lines(bytes) {
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        for key in ["session_id", "thread_id", "sessionID"] {
            if let Some(id) = value.get(key).and_then(|v| v.as_str()) {
                return id.to_owned();
            }
        }
    }
    panic!("no session id in the transcript")
}

/// Run `records` through a tracker, then end it: the final activity and the phases of its
/// events, in order.
fn run(kind: ParserKind, records: &[(&[u8], bool)], ending: Ending) -> (Activity, Vec<Phase>) {
    let mut tracker = Tracker::new(kind, false);
    let mut update = Update::default();
    for (data, partial) in records {
        tracker.feed(data, *partial, &mut update);
    }
    let end = tracker.end(ending);
    let phases = update
        .events
        .iter()
        .chain(&end.events)
        .map(|a| a.phase)
        .collect();
    (tracker.activity().clone(), phases)
}

fn whole(bytes: &[u8]) -> Vec<(&[u8], bool)> {
    lines(bytes).into_iter().map(|l| (l, false)).collect()
}

/// Every line cut into pieces of `n` bytes, all but the last marked partial (as the capture
/// cuts a line longer than its record limit).
fn pieces(bytes: &[u8], n: usize) -> Vec<(&[u8], bool)> {
    let mut out = Vec::new();
    for line in lines(bytes) {
        let chunks: Vec<&[u8]> = line.chunks(n).collect();
        let last = chunks.len() - 1;
        out.extend(chunks.into_iter().enumerate().map(|(i, c)| (c, i < last)));
    }
    out
}

fn check(name: &str, kind: ParserKind, ending: Ending, expect: impl Fn(&Activity, &[Phase], &str)) {
    let bytes = fixture(name);
    let session = session_of(&bytes);
    let (activity, phases) = run(kind, &whole(&bytes), ending);
    expect(&activity, &phases, &session);
    let (cut, cut_phases) = run(kind, &pieces(&bytes, 37), ending);
    assert_eq!(cut, activity, "{name}: cut into pieces");
    assert_eq!(cut_phases, phases, "{name}: cut into pieces");
}

use Phase::{Done, Failed, Tool, Working};

fn tokens(input: u64, output: u64) -> Tokens {
    Tokens {
        input,
        output,
        ..Tokens::default()
    }
}

#[test]
fn claude_tool_session() {
    check(
        "claude-tool",
        ParserKind::ClaudeStreamJson,
        Ending::Exited(0),
        |a, phases, session| {
            assert_eq!(phases, [Working, Tool, Working, Done]);
            assert_eq!(a.session_id.as_deref(), Some(session));
            // The model the API answered as (2.1.197's init line said `claude-opus-4-8[1m]` and
            // its API calls `claude-opus-4-8`; 2.1.332 says `claude-opus-5-5` in both).
            assert_eq!(a.model.as_deref(), Some("claude-opus-5-5"));
            assert_eq!(a.turns, 2);
            assert_eq!(a.tokens, tokens(200, 40));
            assert_eq!(a.cost_usd, Some(Usd::from_dollars(0.0016)));
            assert_eq!(
                a.result.as_deref(),
                Some("The command printed drover-tool-ran.")
            );
            assert_eq!(
                a.last_text.as_deref(),
                Some("The command printed drover-tool-ran.")
            );
            assert!(!a.is_error);
            assert!(a.attention.is_empty(), "{:?}", a.attention);
            assert_eq!(a.current_tool, None);
            assert_eq!(a.ignored_lines, 0);
        },
    );
}

#[test]
fn claude_permission_denial_asks_for_attention() {
    check(
        "claude-permission-denial",
        ParserKind::ClaudeStreamJson,
        Ending::Exited(0),
        |a, phases, _| {
            // The second `Tool` is the refusal (2.1.332's `permission_denied` line), while the
            // refused tool still runs.
            assert_eq!(phases, [Working, Tool, Tool, Working, Done]);
            assert_eq!(a.ignored_lines, 0);
            assert_eq!(a.attention.len(), 1, "{:?}", a.attention);
            assert_eq!(a.attention[0].reason, AttentionReason::PermissionDenied);
            assert_eq!(a.attention[0].detail, "Bash: touch drover-out.txt");
            assert!(!a.is_error);
        },
    );
}

/// The refusal asks for attention when it happens, not only with the run's result line (which
/// may come long after, if the agent goes on): at 2.1.332's `system` `permission_denied` line,
/// or, without that line (older versions), at the refused tool's result by its wording.
#[test]
fn claude_permission_refusal_asks_for_attention_before_the_run_ends() {
    let bytes = fixture("claude-permission-denial");
    let lines = lines(&bytes);
    let is = |line: &[u8], marks: &[&str]| {
        let text = String::from_utf8_lossy(line);
        marks.iter().all(|m| text.contains(m))
    };
    let attention_after = |lines: &[&[u8]], last: usize| {
        let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, false);
        let mut update = Update::default();
        for line in &lines[..=last] {
            tracker.feed(line, false, &mut update);
        }
        assert_eq!(tracker.activity().ignored_lines, 0);
        tracker.activity().attention.clone()
    };
    let system = lines
        .iter()
        .position(|l| is(l, &[r#""subtype":"permission_denied""#]))
        .expect("a permission_denied line");
    let attention = attention_after(&lines, system);
    assert_eq!(attention.len(), 1, "{attention:?}");
    assert_eq!(attention[0].reason, AttentionReason::PermissionDenied);
    assert_eq!(attention[0].detail, "Bash: touch drover-out.txt");

    let older: Vec<&[u8]> = lines
        .iter()
        .copied()
        .filter(|l| !is(l, &[r#""subtype":"permission_denied""#]))
        .collect();
    let refused = older
        .iter()
        .position(|l| is(l, &[r#""is_error":true"#, "tool_result"]))
        .expect("a refused tool's result");
    assert_eq!(attention_after(&older, refused), attention);
    // The result line's `permission_denials` names the same refusal: still one.
    assert_eq!(attention_after(&lines, lines.len() - 1), attention);
}

#[test]
fn claude_max_turns_fails_with_attention() {
    check(
        "claude-max-turns",
        ParserKind::ClaudeStreamJson,
        Ending::Exited(1),
        |a, phases, _| {
            assert_eq!(phases, [Working, Tool, Working, Failed]);
            assert_eq!(a.turns, 2);
            assert!(a.is_error);
            assert_eq!(a.attention[0].reason, AttentionReason::MaxTurns);
            assert_eq!(a.cost_usd, Some(Usd::from_dollars(0.0008)));
        },
    );
}

#[test]
fn claude_api_error_fails_with_attention() {
    check(
        "claude-error",
        ParserKind::ClaudeStreamJson,
        Ending::Exited(1),
        |a, phases, _| {
            assert_eq!(phases, [Working, Failed]);
            assert!(a.is_error);
            assert_eq!(
                a.model.as_deref(),
                Some("claude-opus-5-5"),
                "not <synthetic>"
            );
            assert_eq!(a.attention[0].reason, AttentionReason::Error);
            assert_eq!(
                a.attention[0].detail,
                "API Error: 400 mock: scripted API error"
            );
            assert_eq!(
                a.result.as_deref(),
                Some("API Error: 400 mock: scripted API error")
            );
        },
    );
}

#[test]
fn claude_interrupted_by_stop_fails_without_attention() {
    check(
        "claude-sigint",
        ParserKind::ClaudeStreamJson,
        Ending::Exited(0),
        |a, phases, _| {
            assert_eq!(phases.last(), Some(&Failed));
            assert!(a.is_error);
            assert!(a.attention.is_empty(), "{:?}", a.attention);
            assert_eq!(a.result.as_deref(), Some("interrupted"));
        },
    );
}

#[test]
fn codex_tool_session() {
    check(
        "codex-tool",
        ParserKind::CodexJson,
        Ending::Exited(0),
        |a, phases, session| {
            assert_eq!(phases, [Working, Tool, Working, Done]);
            assert_eq!(a.session_id.as_deref(), Some(session));
            assert_eq!(a.turns, 1);
            assert_eq!(a.tokens, tokens(200, 40));
            assert_eq!(a.cost_usd, None);
            assert_eq!(
                a.result.as_deref(),
                Some("The command printed drover-tool-ran.")
            );
            assert!(
                a.attention.is_empty(),
                "the model-metadata warning is no error: {:?}",
                a.attention
            );
        },
    );
}

#[test]
fn codex_api_error_fails_with_attention() {
    check(
        "codex-error",
        ParserKind::CodexJson,
        Ending::Exited(1),
        |a, phases, _| {
            // The `error` line asks for attention (an event), `turn.failed` ends the run.
            assert_eq!(phases, [Working, Working, Failed]);
            assert_eq!(
                a.attention.len(),
                1,
                "the same message once: {:?}",
                a.attention
            );
            assert!(a.is_error);
            assert_eq!(a.attention[0].reason, AttentionReason::Error);
            assert!(a.attention[0].detail.contains("mock: scripted API error"));
        },
    );
}

#[test]
fn gemini_tool_session() {
    check(
        "gemini-tool",
        ParserKind::GeminiStreamJson,
        Ending::Exited(0),
        |a, phases, session| {
            assert_eq!(phases, [Working, Tool, Working, Done]);
            assert_eq!(a.session_id.as_deref(), Some(session));
            assert_eq!(a.model.as_deref(), Some("gemini-2.5-pro"));
            assert_eq!(a.turns, 1);
            assert_eq!(a.tokens, tokens(200, 40));
            assert_eq!(
                a.result.as_deref(),
                Some("The command printed drover-tool-ran.")
            );
            assert_eq!(a.current_tool, None);
        },
    );
}

#[test]
fn gemini_api_error_fails_with_attention() {
    check(
        "gemini-error",
        ParserKind::GeminiStreamJson,
        Ending::Exited(144),
        |a, phases, _| {
            assert_eq!(phases, [Working, Failed]);
            assert!(a.is_error);
            assert_eq!(a.attention[0].reason, AttentionReason::Error);
            assert!(a.attention[0].detail.contains("mock: scripted API error"));
        },
    );
}

#[test]
fn opencode_tool_session() {
    check(
        "opencode-tool",
        ParserKind::OpencodeJson,
        Ending::Exited(0),
        |a, phases, session| {
            assert_eq!(phases, [Working, Tool, Working, Done]);
            assert_eq!(a.session_id.as_deref(), Some(session));
            assert_eq!(a.turns, 2);
            assert_eq!(a.tokens, tokens(200, 40));
            // Two steps of 100 in / 20 out at the mock model's configured price.
            assert_eq!(a.cost_usd, Some(Usd::from_dollars(0.0012)));
            assert_eq!(
                a.result.as_deref(),
                Some("The command printed drover-tool-ran.")
            );
        },
    );
}

#[test]
fn opencode_api_error_fails_with_attention() {
    check(
        "opencode-error",
        ParserKind::OpencodeJson,
        Ending::Exited(1),
        |a, phases, _| {
            assert_eq!(phases, [Failed]);
            assert!(a.is_error);
            assert_eq!(a.attention[0].reason, AttentionReason::Error);
            assert_eq!(a.attention[0].detail, "mock: scripted API error");
        },
    );
}

/// Garbage, plain text and truncated JSON between a transcript's lines change nothing but the
/// ignored-lines counter; a line cut off mid-JSON at the end of a record does not poison the
/// next.
#[test]
fn garbage_lines_only_count_as_ignored() {
    let bytes = fixture("claude-tool");
    let clean = run(
        ParserKind::ClaudeStreamJson,
        &whole(&bytes),
        Ending::Exited(0),
    );
    let garbage: [&[u8]; 5] = [
        b"plain text from a hook\n",
        b"{\"type\":\"assistant\",\"message\":{\"id\":\"x\",\"content\":[{\"ty\n",
        b"{not json at all}\n",
        b"{\"type\":\"from_the_future\",\"x\":1}\n",
        b"\xff\xfe binary \x00 bytes\n",
    ];
    let mut records = Vec::new();
    for (i, line) in lines(&bytes).into_iter().enumerate() {
        records.push((garbage[i % garbage.len()], false));
        records.push((line, false));
    }
    let (mut dirty, phases) = run(ParserKind::ClaudeStreamJson, &records, Ending::Exited(0));
    assert_eq!(dirty.ignored_lines, lines(&bytes).len() as u64);
    assert_eq!(phases, clean.1);
    dirty.ignored_lines = 0;
    assert_eq!(dirty, clean.0);
}

/// A line longer than the tracker assembles is skipped (counted), and the next is read.
#[test]
fn an_oversized_line_is_skipped_and_counted() {
    let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, false);
    let mut update = Update::default();
    let piece = vec![b'x'; 1024 * 1024];
    for _ in 0..5 {
        tracker.feed(&piece, true, &mut update);
    }
    tracker.feed(b"\n", false, &mut update);
    let bytes = fixture("claude-tool");
    for line in lines(&bytes) {
        tracker.feed(line, false, &mut update);
    }
    assert_eq!(tracker.activity().ignored_lines, 1);
    assert_eq!(tracker.activity().turns, 2);
}

/// With stdin a pipe (`--input-format stream-json`), a finished turn waits for the next message.
#[test]
fn an_interactive_turn_ends_waiting() {
    let bytes = fixture("claude-tool");
    let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, true);
    let mut update = Update::default();
    for line in lines(&bytes) {
        tracker.feed(line, false, &mut update);
    }
    assert_eq!(tracker.activity().phase, Phase::Waiting);
    let end = tracker.end(Ending::Killed(15));
    assert_eq!(tracker.activity().phase, Phase::Done);
    assert_eq!(end.events.len(), 1);
}

/// Tool ids are the agent's to choose: one of 100 KB is kept by its first 128 bytes (64 pending
/// calls pinned up to 64 lines' worth before), and its result still ends the call.
#[test]
fn claude_tool_ids_of_any_length_are_kept_bounded_and_still_paired() {
    let long = |tag: char| format!("toolu_{tag}{}", "x".repeat(100_000));
    let call = |id: &str| {
        format!(
            r#"{{"type":"assistant","message":{{"id":"msg_{}","model":"m","content":[{{"type":"tool_use","id":"{id}","name":"Bash","input":{{"command":"ls"}}}}]}}}}"#,
            &id[..7]
        )
    };
    let result = |id: &str| {
        format!(
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"{id}","content":"ok"}}]}}}}"#
        )
    };
    let (a, b) = (long('a'), long('b'));
    let lines = [call(&a), call(&b), result(&a), result(&b)];
    let records: Vec<(&[u8], bool)> = lines.iter().map(|l| (l.as_bytes(), false)).collect();
    let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, false);
    let mut update = Update::default();
    for (i, (data, partial)) in records.iter().enumerate() {
        tracker.feed(data, *partial, &mut update);
        let expected = if i < 3 { Tool } else { Working };
        assert_eq!(tracker.activity().phase, expected, "after line {i}");
    }
}

/// codex reports a stream retry it then gets past as a top-level `error` ("Reconnecting...
/// 1/5", its `StreamError`): a turn that completes after it is done and asks nobody for
/// anything. One that fails keeps it (`codex_api_error_fails_with_attention`).
#[test]
fn codex_a_retried_stream_error_is_forgotten_when_the_turn_completes() {
    let clean = fixture("codex-tool");
    let mut bytes = Vec::new();
    for line in lines(&clean) {
        bytes.extend_from_slice(line);
        if line.starts_with(br#"{"type":"turn.started"}"#) {
            bytes.extend_from_slice(
                b"{\"type\":\"error\",\"message\":\"Reconnecting... 1/5 (stream disconnected before completion)\"}\n",
            );
        }
    }
    let (activity, phases) = run(ParserKind::CodexJson, &whole(&bytes), Ending::Exited(0));
    assert_eq!(phases, [Working, Working, Tool, Working, Done]);
    assert!(activity.attention.is_empty(), "{:?}", activity.attention);
    assert!(!activity.is_error);
    assert_eq!(
        activity.result.as_deref(),
        Some("The command printed drover-tool-ran.")
    );
}

/// A gemini reply whose streamed text outgrew its bound ends with `…`; text after the cut is
/// not joined to it as if nothing were between.
#[test]
fn gemini_a_reply_cut_short_says_so() {
    let delta = |text: &str| {
        format!(r#"{{"type":"message","role":"assistant","content":"{text}","delta":true}}"#)
    };
    let lines = [
        r#"{"type":"init","session_id":"s","model":"gemini-2.5-pro"}"#.to_owned(),
        delta("Hello "),
        delta(&"x".repeat(4200)),
        delta("Bye."),
        r#"{"type":"result","status":"success","stats":{}}"#.to_owned(),
    ];
    let records: Vec<(&[u8], bool)> = lines.iter().map(|l| (l.as_bytes(), false)).collect();
    let (activity, _) = run(ParserKind::GeminiStreamJson, &records, Ending::Exited(0));
    assert_eq!(activity.result.as_deref(), Some("Hello …"));
}

/// Every line each real CLI printed, in every recorded transcript, is one its parser reads: a
/// line a new CLI version adds shows up here as ignored (claude 2.1.332's `permission_denied`
/// line did) instead of going unnoticed.
#[test]
fn every_recorded_line_is_read() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(stem) = name.strip_suffix(".jsonl") else {
            continue;
        };
        let kind = match stem.split('-').next() {
            Some("claude") => ParserKind::ClaudeStreamJson,
            Some("codex") => ParserKind::CodexJson,
            Some("gemini") => ParserKind::GeminiStreamJson,
            Some("opencode") => ParserKind::OpencodeJson,
            _ => panic!("{name}: which CLI?"),
        };
        let (activity, _) = run(kind, &whole(&fixture(stem)), Ending::Exited(0));
        assert_eq!(activity.ignored_lines, 0, "{name}");
        checked += 1;
    }
    assert!(checked >= 30, "{checked} transcripts");
}
