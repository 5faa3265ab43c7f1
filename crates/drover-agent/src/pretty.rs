//! `drover logs --pretty`: an agent's structured output as a readable transcript.
//!
//! Assistant text as it is; each tool call on one line (`→ Bash: ls -la`); a tool's result
//! shortened to its first lines (`← ...`); the final result with turns, tokens and cost. A line
//! the format does not know, and every line of an agent without a parser, passes through
//! untouched.

use serde_json::Value;

use crate::{summarize_input, ParserKind};

/// Longest shortened tool result line, in characters.
const RESULT_CHARS: usize = 160;

/// Renders one agent's lines.
#[derive(Debug)]
pub struct Pretty {
    kind: Option<ParserKind>,
    /// Text was printed without its newline (Gemini streams text in pieces).
    open_text: bool,
    /// opencode reports tokens and cost per step: the run's sums so far.
    steps: Steps,
}

#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    input: u64,
    output: u64,
    cached: u64,
    cost: f64,
}

impl Pretty {
    /// A renderer for an agent whose backend uses `kind` (`None`: lines pass through).
    pub fn new(kind: Option<ParserKind>) -> Pretty {
        Pretty {
            kind,
            open_text: false,
            steps: Steps::default(),
        }
    }

    /// The transcript text for one whole line (its newline included or not), or `None` when
    /// the line passes through as it is. Some lines render to nothing (a turn starting).
    pub fn line(&mut self, line: &[u8]) -> Option<String> {
        let kind = self.kind?;
        let trimmed = line.trim_ascii();
        if trimmed.first() != Some(&b'{') {
            return self.raw(line);
        }
        let Ok(value) = serde_json::from_slice::<Value>(trimmed) else {
            return self.raw(line);
        };
        let mut out = Out::default();
        let known = match kind {
            ParserKind::ClaudeStreamJson => claude(&value, &mut out),
            ParserKind::CodexJson => codex(&value, &mut out),
            ParserKind::GeminiStreamJson => gemini(&value, &mut out),
            ParserKind::OpencodeJson => opencode(&value, &mut out, &mut self.steps),
        };
        if !known {
            return self.raw(line);
        }
        let mut text = String::new();
        if self.open_text && !out.continues_text {
            text.push('\n');
        }
        // Decoded JSON can hold live escapes; they are shown, not run.
        text.push_str(&crate::printable(&out.text, true));
        if !out.continues_text {
            self.open_text = false;
        } else if !out.text.is_empty() {
            self.open_text = !out.text.ends_with('\n');
        }
        Some(text)
    }

    /// A line passing through: close any open text first (then the line is written as text,
    /// which keeps it unless it is not UTF-8).
    fn raw(&mut self, line: &[u8]) -> Option<String> {
        if std::mem::take(&mut self.open_text) {
            return Some(format!("\n{}", String::from_utf8_lossy(line)));
        }
        None
    }

    /// Whether text is open (printed without its newline): the caller ends it at the end.
    pub fn open_text(&self) -> bool {
        self.open_text
    }
}

#[derive(Default)]
struct Out {
    text: String,
    /// This line is a piece of streamed text: no newline before it.
    continues_text: bool,
}

impl Out {
    fn line(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn text(&mut self, text: &str) {
        let text = text.trim_end_matches('\n');
        if !text.is_empty() {
            self.line(text);
        }
    }

    fn tool(&mut self, name: &str, summary: &str) {
        if summary.is_empty() {
            self.line(&format!("→ {name}"));
        } else {
            self.line(&format!("→ {name}: {summary}"));
        }
    }

    fn tool_result(&mut self, text: &str, is_error: bool) {
        let mark = if is_error { "✗" } else { "←" };
        self.line(&format!("  {mark} {}", shorten(text)));
    }
}

/// The first non-empty line of `text`, at most [`RESULT_CHARS`] characters, with how many
/// lines were left out.
fn shorten(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let Some(first) = lines.first() else {
        return "(no output)".to_owned();
    };
    let mut out: String = first.trim_end().chars().take(RESULT_CHARS).collect();
    if first.chars().count() > RESULT_CHARS {
        out.push('…');
    }
    if lines.len() > 1 {
        out.push_str(&format!(" (+{} lines)", lines.len() - 1));
    }
    out
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or_default()
}

/// `1.2k in · 345 out · 10.0k cached`.
fn tokens(input: u64, output: u64, cached: u64) -> String {
    let n = |n: u64| {
        if n >= 10_000 {
            format!("{:.0}k", n as f64 / 1000.0)
        } else if n >= 1000 {
            format!("{:.1}k", n as f64 / 1000.0)
        } else {
            n.to_string()
        }
    };
    let mut out = format!("{} in · {} out", n(input), n(output));
    if cached > 0 {
        out.push_str(&format!(" · {} cached", n(cached)));
    }
    out
}

fn claude(v: &Value, out: &mut Out) -> bool {
    match str_of(v, "type") {
        "system" => match str_of(v, "subtype") {
            "init" => out.line(&format!(
                "● session {} · {} · {}",
                str_of(v, "session_id"),
                str_of(v, "model"),
                str_of(v, "cwd")
            )),
            "api_retry" => out.line(&format!(
                "! API retry {}/{}: {}",
                u64_of(v, "attempt"),
                u64_of(v, "max_retries"),
                v.get("error").map(Value::to_string).unwrap_or_default()
            )),
            _ => {}
        },
        "assistant" => {
            let content = v.pointer("/message/content").and_then(Value::as_array);
            for block in content.into_iter().flatten() {
                match str_of(block, "type") {
                    "text" => out.text(str_of(block, "text")),
                    "tool_use" => out.tool(
                        str_of(block, "name"),
                        &block.get("input").map(summarize_input).unwrap_or_default(),
                    ),
                    _ => {}
                }
            }
        }
        "user" => {
            let content = v.pointer("/message/content").and_then(Value::as_array);
            for block in content.into_iter().flatten() {
                if str_of(block, "type") == "tool_result" {
                    let text = match block.get("content") {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Array(items)) => items
                            .iter()
                            .map(|i| str_of(i, "text"))
                            .collect::<Vec<_>>()
                            .join("\n"),
                        _ => String::new(),
                    };
                    let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
                    out.tool_result(&text, is_error);
                }
            }
        }
        "result" => {
            for denial in v
                .get("permission_denials")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.line(&format!(
                    "! permission denied: {}: {}",
                    str_of(denial, "tool_name"),
                    denial
                        .get("tool_input")
                        .map(summarize_input)
                        .unwrap_or_default()
                ));
            }
            let usage = v.get("usage").cloned().unwrap_or_default();
            let turns = u64_of(v, "num_turns");
            let figures = format!(
                "{turns} turn{} · {} · ${:.4}",
                if turns == 1 { "" } else { "s" },
                tokens(
                    u64_of(&usage, "input_tokens"),
                    u64_of(&usage, "output_tokens"),
                    u64_of(&usage, "cache_read_input_tokens")
                ),
                v.get("total_cost_usd")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            );
            let subtype = str_of(v, "subtype");
            let is_error = v.get("is_error").and_then(Value::as_bool) == Some(true);
            if is_error || subtype != "success" {
                let what = if subtype == "success" {
                    "error"
                } else {
                    subtype
                };
                out.line(&format!("✗ {what} · {figures}"));
                let result = str_of(v, "result");
                if !result.is_empty() {
                    out.line(&format!("  {}", shorten(result)));
                }
            } else {
                out.line(&format!("✓ done · {figures}"));
            }
        }
        "stream_event" => {}
        _ => return false,
    }
    true
}

fn codex(v: &Value, out: &mut Out) -> bool {
    if let Some(msg) = v.get("msg") {
        return codex_legacy(msg, out);
    }
    let item = v.get("item").cloned().unwrap_or_default();
    match str_of(v, "type") {
        "thread.started" => out.line(&format!("● thread {}", str_of(v, "thread_id"))),
        "turn.started" => {}
        "item.started" => {
            if str_of(&item, "type") == "command_execution" {
                out.tool(
                    "shell",
                    &item.get("command").map(summarize_input).unwrap_or_default(),
                );
            }
        }
        "item.updated" => {}
        "item.completed" => match str_of(&item, "type") {
            "agent_message" => out.text(str_of(&item, "text")),
            "command_execution" => {
                let code = item.get("exit_code").and_then(Value::as_i64);
                let mut text = shorten(str_of(&item, "aggregated_output"));
                if let Some(code) = code.filter(|c| *c != 0) {
                    text.push_str(&format!(" (exit {code})"));
                }
                out.line(&format!(
                    "  {} {text}",
                    if code.unwrap_or(0) == 0 { "←" } else { "✗" }
                ));
            }
            "file_change" => out.tool(
                "apply_patch",
                &item.get("changes").map(summarize_input).unwrap_or_default(),
            ),
            "mcp_tool_call" => out.tool(
                &format!("{}.{}", str_of(&item, "server"), str_of(&item, "tool")),
                &item
                    .get("arguments")
                    .map(summarize_input)
                    .unwrap_or_default(),
            ),
            "web_search" => out.tool("web_search", str_of(&item, "query")),
            "error" => out.line(&format!("! {}", str_of(&item, "message"))),
            _ => {}
        },
        "turn.completed" => {
            let usage = v.get("usage").cloned().unwrap_or_default();
            let cached = u64_of(&usage, "cached_input_tokens");
            out.line(&format!(
                "✓ turn done · {}",
                tokens(
                    u64_of(&usage, "input_tokens").saturating_sub(cached),
                    u64_of(&usage, "output_tokens"),
                    cached
                )
            ));
        }
        "turn.failed" => out.line(&format!(
            "✗ turn failed: {}",
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
        )),
        "error" => out.line(&format!("! {}", str_of(v, "message"))),
        _ => return false,
    }
    true
}

fn codex_legacy(msg: &Value, out: &mut Out) -> bool {
    match str_of(msg, "type") {
        "session_configured" => out.line(&format!(
            "● session {} · {}",
            str_of(msg, "session_id"),
            str_of(msg, "model")
        )),
        "agent_message" => out.text(str_of(msg, "message")),
        "exec_command_begin" => out.tool(
            "shell",
            &msg.get("command").map(summarize_input).unwrap_or_default(),
        ),
        "exec_command_end" => {
            let code = msg.get("exit_code").and_then(Value::as_i64).unwrap_or(0);
            out.tool_result(
                &format!("{}{}", str_of(msg, "stdout"), str_of(msg, "stderr")),
                code != 0,
            );
        }
        "task_complete" => out.line("✓ done"),
        "error" => out.line(&format!("✗ {}", str_of(msg, "message"))),
        "task_started"
        | "token_count"
        | "agent_reasoning"
        | "agent_message_delta"
        | "agent_reasoning_delta"
        | "exec_command_output_delta"
        | "stream_error" => {}
        _ => return false,
    }
    true
}

fn gemini(v: &Value, out: &mut Out) -> bool {
    match str_of(v, "type") {
        "init" => out.line(&format!(
            "● session {} · {}",
            str_of(v, "session_id"),
            str_of(v, "model")
        )),
        "message" => {
            if str_of(v, "role") == "assistant" {
                out.text.push_str(str_of(v, "content"));
                out.continues_text = true;
            } else {
                out.line(&format!("> {}", shorten(str_of(v, "content"))));
            }
        }
        "tool_use" => out.tool(
            str_of(v, "tool_name"),
            &v.get("parameters").map(summarize_input).unwrap_or_default(),
        ),
        "tool_result" => {
            if str_of(v, "status") == "error" {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.tool_result(message, true);
            } else {
                out.tool_result(str_of(v, "output"), false);
            }
        }
        "error" => out.line(&format!("! {}", str_of(v, "message"))),
        "result" => {
            let stats = v.get("stats").cloned().unwrap_or_default();
            let figures = tokens(
                u64_of(&stats, "input_tokens").saturating_sub(u64_of(&stats, "cached")),
                u64_of(&stats, "output_tokens"),
                u64_of(&stats, "cached"),
            );
            if str_of(v, "status") == "error" {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                out.line(&format!("✗ error · {figures}"));
                out.line(&format!("  {}", shorten(message)));
            } else {
                out.line(&format!("✓ done · {figures}"));
            }
        }
        _ => return false,
    }
    true
}

fn opencode(v: &Value, out: &mut Out, steps: &mut Steps) -> bool {
    let part = v.get("part").cloned().unwrap_or_default();
    match str_of(v, "type") {
        "step_start" | "reasoning" => {}
        "text" => out.text(str_of(&part, "text")),
        "tool_use" => {
            let state = part.get("state").cloned().unwrap_or_default();
            out.tool(
                str_of(&part, "tool"),
                &state.get("input").map(summarize_input).unwrap_or_default(),
            );
            if str_of(&state, "status") == "error" {
                out.tool_result(str_of(&state, "error"), true);
            } else {
                out.tool_result(str_of(&state, "output"), false);
            }
        }
        "step_finish" => {
            let t = part.get("tokens").cloned().unwrap_or_default();
            // The numbers are the agent's: they saturate rather than overflow.
            steps.input = steps.input.saturating_add(u64_of(&t, "input"));
            steps.output = steps
                .output
                .saturating_add(u64_of(&t, "output").saturating_add(u64_of(&t, "reasoning")));
            steps.cached = steps.cached.saturating_add(
                t.pointer("/cache/read")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
            let cost = part.get("cost").and_then(Value::as_f64).unwrap_or(0.0);
            if cost.is_finite() && cost >= 0.0 {
                steps.cost += cost;
            }
            if str_of(&part, "reason") != "tool-calls" {
                let sum = std::mem::take(steps);
                out.line(&format!(
                    "✓ done · {} · ${:.4}",
                    tokens(sum.input, sum.output, sum.cached),
                    sum.cost
                ));
            }
        }
        "error" => {
            let error = v.get("error").cloned().unwrap_or_default();
            let message = error
                .pointer("/data/message")
                .or_else(|| error.get("message"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            out.line(&format!("✗ {}: {message}", str_of(&error, "name")));
        }
        _ => return false,
    }
    true
}
