//! Each real CLI through the real daemon: a tool call, `continue`, and an API error. What the
//! activity must say is exact: the mock answers every model call with 100 input and 20 output
//! tokens, so totals follow from the script.

use serde_json::{json, Value};

use super::cli::Cli;
use super::rig::{Copies, Rig};
use crate::common::ok;

const TASK: &str = "Run the scripted step.";
const NEXT: &str = "Continue with the next step.";
/// The shell command the mock asks for; only running it prints [`TOOL_OUTPUT`]. Nothing a
/// shell expands: gemini refuses `$(..)` and backticks ("Command injection detected").
const COMMAND: &str = "printf drover-tool-%s 42";
const TOOL_OUTPUT: &str = "drover-tool-42";
const FIRST_RESULT: &str = "The command printed drover-tool-42.";
const SECOND_RESULT: &str = "Second answer, after resuming.";
const ERROR: &str = "mock: scripted API error";

/// What one CLI's run of the tool script must come out as.
struct Expect {
    cli: Cli,
    parser: &'static str,
    /// The model the activity names (codex and opencode print none).
    model: Option<&'static str>,
    /// Turns as the parser counts them for this CLI (see docs/BACKENDS.md, Parsers).
    turns: u64,
    /// The run's cost: claude reports one; opencode sums each step's (the mock's model is
    /// priced in its config); codex and gemini report none.
    cost: Option<f64>,
    /// `current_tool` while the shell tool runs: the CLI's name for it and its summary.
    tool: (&'static str, &'static str),
    /// The last line of `logs --pretty` for the tool run.
    done_line: &'static str,
    /// Tokens (input, output) the continued run reports.
    continued_tokens: (u64, u64),
    /// Exit code, `activity` phases and last pretty line of the API error run.
    error_exit: i64,
    error_phases: &'static [&'static str],
    error_line: &'static str,
    /// Model calls the API error run makes: one, as no backoff retry is allowed (see
    /// tests/agents/README.md), except where the CLI retries with features turned off.
    error_calls: usize,
}

const CLAUDE: Expect = Expect {
    cli: Cli::Claude,
    parser: "claude-stream-json",
    model: Some("claude-sonnet-4-5"),
    turns: 2,
    cost: Some(0.0012),
    tool: ("Bash", COMMAND),
    done_line: "✓ done · 2 turns · 200 in · 40 out · $0.0012",
    continued_tokens: (100, 20),
    error_exit: 1,
    error_phases: &["working", "failed"],
    error_line: "  API Error: 400 mock: scripted API error",
    // claude 2.1.332 answers a 400 by retrying without its experimental betas, then with one
    // feature after another turned off (thinking display, deferred tools, ...), whatever
    // CLAUDE_CODE_MAX_RETRIES says; the mock refuses each (tests/agents/mock_model.py).
    error_calls: 6,
};

const CODEX: Expect = Expect {
    cli: Cli::Codex,
    parser: "codex-json",
    model: None,
    turns: 1,
    cost: None,
    tool: ("shell", "/bin/bash -lc 'printf drover-tool-%s 42'"),
    done_line: "✓ turn done · 200 in · 40 out",
    continued_tokens: (300, 60),
    error_exit: 1,
    // The `error` line asks for attention, then `turn.failed` ends the run.
    error_phases: &["working", "working", "failed"],
    error_line: "✗ turn failed: {\"error\": {\"type\": \"invalid_request_error\", \"message\": \
                 \"mock: scripted API error\", \"code\": null, \"param\": null}}",
    error_calls: 1,
};

const GEMINI: Expect = Expect {
    cli: Cli::Gemini,
    parser: "gemini-stream-json",
    model: Some("gemini-2.5-pro"),
    turns: 1,
    cost: None,
    tool: ("run_shell_command", COMMAND),
    done_line: "✓ done · 200 in · 40 out",
    continued_tokens: (100, 20),
    // gemini's status for an API error (not one of its documented exit codes).
    error_exit: 144,
    error_phases: &["working", "failed"],
    error_line: "  [API Error: {\"error\":{\"code\":400,\"message\":\"mock: scripted API error\",\
                 \"status\":\"invalid_request_error\"}}]",
    error_calls: 1,
};

const OPENCODE: Expect = Expect {
    cli: Cli::Opencode,
    parser: "opencode-json",
    model: None,
    turns: 2,
    cost: Some(0.0012),
    tool: ("bash", COMMAND),
    done_line: "✓ done · 200 in · 40 out · $0.0012",
    continued_tokens: (100, 20),
    error_exit: 1,
    error_phases: &["failed"],
    error_line: "✗ APIError: mock: scripted API error",
    error_calls: 1,
};

#[test]
fn claude_runs_a_tool_and_continues_its_session() {
    tool_call_then_continue(&CLAUDE);
}

#[test]
fn codex_runs_a_tool_and_continues_its_session() {
    tool_call_then_continue(&CODEX);
}

#[test]
fn gemini_runs_a_tool_and_continues_its_session() {
    tool_call_then_continue(&GEMINI);
}

#[test]
fn opencode_runs_a_tool_and_continues_its_session() {
    tool_call_then_continue(&OPENCODE);
}

#[test]
fn claude_api_error_fails_with_attention() {
    api_error(&CLAUDE);
}

#[test]
fn codex_api_error_fails_with_attention() {
    api_error(&CODEX);
}

#[test]
fn gemini_api_error_fails_with_attention() {
    api_error(&GEMINI);
}

#[test]
fn opencode_api_error_fails_with_attention() {
    api_error(&OPENCODE);
}

fn tool_call_then_continue(expect: &Expect) {
    let script = json!({"turns": [
        {"shell": COMMAND},
        {"text": FIRST_RESULT},
        {"text": SECOND_RESULT},
    ]});
    let rig = Rig::new(expect.cli, &script, Copies::Kept);
    let name = expect.cli.name();
    let id = rig.spawn("first", TASK, &[]);
    let info = rig.wait(&id);
    // The built-in command line is one the CLI accepts: it ran to a clean end.
    assert_exit(&rig, &info, 0);
    let lines = stored_transcript(&rig, &id);
    let session = session_in(&lines[0])
        .unwrap_or_else(|| panic!("{name}: no session id in its first line: {}", lines[0]));

    let activity = &info["activity"];
    assert_eq!(activity["parser"], expect.parser, "{name}");
    assert_eq!(activity["session_id"], session.as_str(), "{name}");
    assert_eq!(activity["model"].as_str(), expect.model, "{name}");
    assert_eq!(activity["phase"], "done", "{name}");
    assert_eq!(activity["turns"], expect.turns, "{name}");
    assert_eq!(tokens(activity), (200, 40), "{name}");
    assert_eq!(activity["cost_usd"].as_f64(), expect.cost, "{name}");
    assert_eq!(activity["result"], FIRST_RESULT, "{name}");
    assert_eq!(activity["is_error"], false, "{name}");
    assert_eq!(activity["attention"], json!([]), "{name}");
    assert_eq!(activity["current_tool"], Value::Null, "{name}");
    assert_eq!(activity["ignored_lines"], 0, "{name}");

    // The phases as they were published, the tool phase naming the CLI's own tool.
    let events = rig.events(&id, "activity");
    let phases: Vec<&str> = events
        .iter()
        .map(|e| e["activity"]["phase"].as_str().expect("phase"))
        .collect();
    assert_eq!(phases, ["working", "tool", "working", "done"], "{name}");
    let tool = &events[1]["activity"]["current_tool"];
    assert_eq!(tool["name"], expect.tool.0, "{name}");
    assert_eq!(tool["summary"], expect.tool.1, "{name}");

    // The CLI really ran the command and sent its output back to the model.
    let calls = rig.mock.model_calls();
    assert_eq!(calls.len(), 2, "{name}: model calls");
    assert!(
        !calls[0]["body"].to_string().contains(TOOL_OUTPUT),
        "{name}"
    );
    assert!(
        calls[1]["body"].to_string().contains(TOOL_OUTPUT),
        "{name}: the tool's output is not in the next request"
    );

    let pretty = ok(rig.daemon.drover(&["logs", "--pretty", &id]));
    let tool_line = format!("→ {}: {}", expect.tool.0, expect.tool.1);
    assert!(
        pretty.lines().any(|l| l == tool_line),
        "{name}: no {tool_line:?} in:\n{pretty}"
    );
    assert!(
        pretty.lines().any(|l| l == FIRST_RESULT),
        "{name}: no result line in:\n{pretty}"
    );
    assert_eq!(
        pretty.lines().last(),
        Some(expect.done_line),
        "{name}:\n{pretty}"
    );

    // `continue`: a new agent resuming the same session; the CLI sends the earlier turns.
    let next = ok(rig.daemon.drover(&["continue", "first", NEXT]))
        .trim()
        .to_owned();
    let continued = rig.wait(&next);
    assert_exit(&rig, &continued, 0);
    let lines = stored_transcript(&rig, &next);
    assert_eq!(session_in(&lines[0]), Some(session.clone()), "{name}");
    assert_eq!(continued["parent"], id.as_str(), "{name}");
    assert_eq!(continued["spec"]["resume"], session.as_str(), "{name}");
    let activity = &continued["activity"];
    assert_eq!(activity["session_id"], session.as_str(), "{name}");
    assert_eq!(activity["phase"], "done", "{name}");
    assert_eq!(activity["result"], SECOND_RESULT, "{name}");
    assert_eq!(tokens(activity), expect.continued_tokens, "{name}");
    let calls = rig.mock.model_calls();
    assert_eq!(calls.len(), 3, "{name}: model calls");
    let resumed = calls[2]["body"].to_string();
    for earlier in [TASK, TOOL_OUTPUT, FIRST_RESULT, NEXT] {
        assert!(
            resumed.contains(earlier),
            "{name}: {earlier:?} not in the resumed request: {resumed}"
        );
    }
}

fn api_error(expect: &Expect) {
    let script = json!({"turns": [
        {"error": {"status": 400, "type": "invalid_request_error", "message": ERROR}},
    ]});
    let rig = Rig::new(expect.cli, &script, Copies::Kept);
    let name = expect.cli.name();
    let id = rig.spawn("failing", TASK, &[]);
    let info = rig.wait(&id);
    assert_exit(&rig, &info, expect.error_exit);
    let lines = stored_transcript(&rig, &id);
    let activity = &info["activity"];
    assert_eq!(
        activity["session_id"].as_str(),
        session_in(&lines[0]).as_deref(),
        "{name}"
    );
    assert_eq!(activity["phase"], "failed", "{name}");
    assert_eq!(activity["is_error"], true, "{name}");
    assert_eq!(activity["attention"][0]["reason"], "error", "{name}");
    let detail = activity["attention"][0]["detail"].as_str().expect("detail");
    assert!(detail.contains(ERROR), "{name}: {detail}");
    assert_eq!(rig.phases(&id), expect.error_phases, "{name}");
    assert_eq!(
        rig.mock.model_calls().len(),
        expect.error_calls,
        "{name}: model calls"
    );
    let pretty = ok(rig.daemon.drover(&["logs", "--pretty", &id]));
    assert_eq!(
        pretty.lines().last(),
        Some(expect.error_line),
        "{name}:\n{pretty}"
    );
}

/// The agent ended by exiting with `code`.
fn assert_exit(rig: &Rig, info: &Value, code: i64) {
    assert_eq!(
        (info["state"].as_str(), info["exit_code"].as_i64()),
        (Some("exited"), Some(code)),
        "{}: {info}\nstderr:\n{}",
        rig.cli.name(),
        String::from_utf8_lossy(&rig.logs(info["id"].as_str().unwrap_or("?"), "err"))
    );
}

/// The stored stdout and stderr are byte for byte what the CLI wrote (its `tee`d copy), and
/// stdout is JSON lines, every one of them; the parsed lines.
fn stored_transcript(rig: &Rig, agent: &str) -> Vec<Value> {
    let name = rig.cli.name();
    let (out, err) = rig.copied();
    let stored = rig.logs(agent, "out");
    assert_eq!(
        String::from_utf8_lossy(&stored),
        String::from_utf8_lossy(&out),
        "{name}: stored stdout"
    );
    assert_eq!(stored, out, "{name}: stored stdout, bytes");
    assert_eq!(
        String::from_utf8_lossy(&rig.logs(agent, "err")),
        String::from_utf8_lossy(&err),
        "{name}: stored stderr"
    );
    assert_eq!(rig.logs(agent, "err"), err, "{name}: stored stderr, bytes");
    assert!(out.ends_with(b"\n"), "{name}: stdout ends mid-line");
    out.split_inclusive(|b| *b == b'\n')
        .map(|line| {
            let value: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "{name}: not a JSON line ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            });
            assert!(value.is_object(), "{name}: {value}");
            value
        })
        .collect()
}

/// The session id a CLI's JSON line carries, under whichever name this CLI uses.
pub fn session_in(line: &Value) -> Option<String> {
    ["session_id", "thread_id", "sessionID"]
        .iter()
        .find_map(|k| line[k].as_str())
        .map(str::to_owned)
}

fn tokens(activity: &Value) -> (u64, u64) {
    let t = &activity["tokens"];
    (
        t["input"].as_u64().expect("input tokens"),
        t["output"].as_u64().expect("output tokens"),
    )
}
