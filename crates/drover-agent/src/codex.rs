//! `codex exec --json` (OpenAI Codex CLI).
//!
//! Source: the Codex CLI's `docs/exec.md` ("JSON output mode") and its `exec` event types
//! (`codex-rs/exec/src/exec_events.rs`: `thread.started`, `turn.started`, `turn.completed`,
//! `turn.failed`, `item.started`/`item.updated`/`item.completed` with items `agent_message`,
//! `reasoning`, `command_execution`, `file_change`, `mcp_tool_call`, `web_search`,
//! `todo_list`, `error`; and top-level `error`), checked against transcripts recorded from
//! `@openai/codex` 0.171.0 (`tests/fixtures/real/`). Codex before 0.44 printed
//! `{"id","msg":{"type":...}}` lines instead (`session_configured`, `agent_message`,
//! `exec_command_begin`/`end`, `token_count`, `task_complete`, `error`); both are read.
//!
//! Codex reports no cost. `turns` counts `turn.started` (one per prompt); tokens sum each
//! `turn.completed` usage, whose `input_tokens` include the cached ones.

use drover_proto::{AttentionReason, Tokens};
use serde::Deserialize;
use serde_json::Value;

use crate::reading::Reading;
use crate::summarize_input;

#[derive(Debug, Default)]
pub(crate) struct State {
    /// The latest agent message: the turn's result when it completes.
    last_message: Option<String>,
    /// Tool items running.
    running: usize,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<&'a str>,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    item: Option<Item>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    message: Option<String>,
    /// Before 0.44: `{"id": "...", "msg": {...}}`.
    #[serde(default)]
    msg: Option<Value>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type", alias = "item_type", default)]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    command: Option<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    changes: Option<Value>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Usage {
    input_tokens: u64,
    cached_input_tokens: u64,
    output_tokens: u64,
}

impl Usage {
    fn tokens(self) -> Tokens {
        Tokens {
            input: self.input_tokens.saturating_sub(self.cached_input_tokens),
            output: self.output_tokens,
            cache_read: self.cached_input_tokens,
            cache_write: 0,
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

pub(crate) fn line(state: &mut State, reading: &mut Reading<'_>, bytes: &[u8]) -> bool {
    let Ok(line) = serde_json::from_slice::<Line<'_>>(bytes) else {
        return false;
    };
    if let Some(msg) = &line.msg {
        return legacy(state, reading, msg);
    }
    match line.kind.unwrap_or_default() {
        "thread.started" => {
            if let Some(id) = &line.thread_id {
                reading.session(id);
            }
            reading.working();
        }
        "turn.started" => {
            reading.activity.turns = reading.activity.turns.saturating_add(1);
            state.last_message = None;
            reading.working();
        }
        "item.started" | "item.updated" => {
            if let Some(item) = &line.item {
                item_started(state, reading, item);
            }
        }
        "item.completed" => {
            if let Some(item) = &line.item {
                item_completed(state, reading, item);
            }
        }
        "turn.completed" => {
            if let Some(usage) = line.usage {
                let mut tokens = reading.activity.tokens;
                tokens.add(&usage.tokens());
                reading.activity.tokens = tokens;
            }
            state.running = 0;
            // A top-level `error` is also how codex reports a retry it then got past
            // ("Reconnecting... 1/5": its `StreamError`); a turn that completes was not failed
            // by it, and asks nobody for anything.
            reading
                .activity
                .attention
                .retain(|a| a.reason != AttentionReason::Error);
            let result = state.last_message.take();
            reading.finished(true, result.as_deref());
        }
        "turn.failed" => {
            let message = line.error.map(|e| e.message).unwrap_or_default();
            state.running = 0;
            reading.failed(&message);
        }
        "error" => {
            let message = line.message.unwrap_or_default();
            reading.attention(AttentionReason::Error, &message);
        }
        _ => return false,
    }
    true
}

/// What a tool item is called and what it does, or `None` for items that are not tools.
fn tool_of(item: &Item) -> Option<(String, String)> {
    let summary = |v: &Option<Value>| v.as_ref().map(summarize_input).unwrap_or_default();
    match item.kind.as_str() {
        "command_execution" => Some(("shell".to_owned(), summary(&item.command))),
        "mcp_tool_call" => Some((
            format!(
                "{}.{}",
                item.server.as_deref().unwrap_or("mcp"),
                item.tool.as_deref().unwrap_or("tool")
            ),
            summary(&item.arguments),
        )),
        "web_search" => Some((
            "web_search".to_owned(),
            item.query.clone().unwrap_or_default(),
        )),
        "file_change" => Some(("apply_patch".to_owned(), summary(&item.changes))),
        _ => None,
    }
}

fn item_started(state: &mut State, reading: &mut Reading<'_>, item: &Item) {
    if let Some((name, summary)) = tool_of(item) {
        if item.status.as_deref() != Some("completed") {
            state.running = state.running.saturating_add(1);
            reading.tool(&name, summary);
        }
    }
}

fn item_completed(state: &mut State, reading: &mut Reading<'_>, item: &Item) {
    match item.kind.as_str() {
        "agent_message" => {
            if let Some(text) = &item.text {
                reading.text(text);
                state.last_message = Some(text.clone());
            }
        }
        // A warning (codex 0.171 reports an unknown model's metadata this way and goes on):
        // only `turn.failed` and a top-level `error` mean the run failed.
        "error" => {}
        _ => {
            if let Some((name, summary)) = tool_of(item) {
                if state.running == 0 {
                    // Completed without a start line (a file change): it still ran.
                    reading.tool(&name, summary);
                    reading.mark();
                }
                state.running = state.running.saturating_sub(1);
                if state.running == 0 {
                    reading.tool_done();
                }
                if item.status.as_deref() == Some("declined") {
                    let detail = format!("{name}: {}", summary_of(item));
                    reading.attention(AttentionReason::PermissionDenied, &detail);
                }
            }
        }
    }
    let _ = item.exit_code;
}

fn summary_of(item: &Item) -> String {
    tool_of(item).map(|(_, s)| s).unwrap_or_default()
}

/// Codex before 0.44: `{"id", "msg": {"type", ...}}`.
fn legacy(state: &mut State, reading: &mut Reading<'_>, msg: &Value) -> bool {
    let field = |key: &str| msg.get(key).and_then(Value::as_str).unwrap_or_default();
    match field("type") {
        "session_configured" => {
            reading.session(field("session_id"));
            reading.model(field("model"));
            reading.working();
        }
        "task_started" => {
            reading.activity.turns = reading.activity.turns.saturating_add(1);
            reading.working();
        }
        "agent_message" => {
            reading.text(field("message"));
            state.last_message = Some(field("message").to_owned());
        }
        "exec_command_begin" => {
            let command = msg.get("command").map(summarize_input).unwrap_or_default();
            reading.tool("shell", command);
        }
        "exec_command_end" | "patch_apply_end" | "mcp_tool_call_end" => reading.tool_done(),
        "token_count" => {
            let usage = msg
                .get("info")
                .and_then(|i| i.get("total_token_usage"))
                .unwrap_or(msg);
            if let Ok(usage) = serde_json::from_value::<Usage>(usage.clone()) {
                reading.activity.tokens = usage.tokens();
            }
        }
        "task_complete" => {
            let last = msg
                .get("last_agent_message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| state.last_message.take());
            reading.finished(true, last.as_deref());
        }
        "error" => reading.failed(field("message")),
        // Retries and streamed pieces: the whole message and the outcome follow.
        "stream_error"
        | "agent_reasoning"
        | "agent_message_delta"
        | "agent_reasoning_delta"
        | "exec_command_output_delta" => {}
        _ => return false,
    }
    true
}
