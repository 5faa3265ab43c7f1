//! `gemini -p --output-format stream-json` (Google Gemini CLI).
//!
//! Source: the Gemini CLI's headless-mode documentation (`docs/cli/headless.md`, "Streaming
//! JSON output") and its `StreamJsonFormatter` event types
//! (`packages/core/src/output/types.ts`: `init`, `message`, `tool_use`, `tool_result`,
//! `error`, `result`), checked against transcripts recorded from `@google/gemini-cli` 0.61.0
//! (`tests/fixtures/real/`). One JSON object per line:
//! - `{"type":"init","session_id","model"}`;
//! - `{"type":"message","role":"user"|"assistant","content","delta":true}`: assistant text
//!   arrives in pieces;
//! - `{"type":"tool_use","tool_name","tool_id","parameters"}` and
//!   `{"type":"tool_result","tool_id","status":"success"|"error","output","error"}`;
//! - `{"type":"error","severity":"warning"|"error","message"}`;
//! - `{"type":"result","status":"success"|"error","error":{"type","message"},"stats":{
//!   "total_tokens","input_tokens","output_tokens","cached","input","duration_ms",
//!   "tool_calls"}}` last.
//!
//! Gemini reports no cost. `turns` counts bursts of assistant output (one per model reply);
//! the result's `stats` give the tokens.

use drover_proto::activity::MAX_ACTIVITY_TEXT;
use drover_proto::{AttentionReason, Tokens};
use serde::Deserialize;
use serde_json::Value;

use crate::reading::Reading;
use crate::summarize_input;

#[derive(Debug, Default)]
pub(crate) struct State {
    /// The assistant reply being streamed (bounded), the turn's result when it ends.
    reply: String,
    /// The last event was assistant text: more text continues the same reply.
    in_reply: bool,
    /// The reply outgrew its bound: it ends with `…`, and later text is not joined to it (it
    /// would read as if nothing were between).
    reply_cut: bool,
    /// Tool calls without a result yet.
    running: usize,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    session_id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, borrow)]
    role: Option<&'a str>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    delta: Option<bool>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    stats: Option<Stats>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Stats {
    input_tokens: u64,
    output_tokens: u64,
    cached: u64,
    input: Option<u64>,
}

pub(crate) fn line(state: &mut State, reading: &mut Reading<'_>, bytes: &[u8]) -> bool {
    let Ok(line) = serde_json::from_slice::<Line<'_>>(bytes) else {
        return false;
    };
    if let Some(id) = &line.session_id {
        reading.session(id);
    }
    let was_reply = std::mem::take(&mut state.in_reply);
    match line.kind {
        "init" => {
            if let Some(model) = &line.model {
                reading.model(model);
            }
            reading.working();
        }
        "message" => {
            if line.role == Some("assistant") {
                let text = line.content.unwrap_or_default();
                if !was_reply {
                    state.reply.clear();
                    state.reply_cut = false;
                    reading.activity.turns = reading.activity.turns.saturating_add(1);
                }
                if line.delta == Some(true) {
                    if state.reply_cut {
                        // Cut already: nothing joins it.
                    } else if state.reply.len() + text.len() <= 2 * MAX_ACTIVITY_TEXT {
                        state.reply.push_str(&text);
                    } else {
                        state.reply_cut = true;
                        state.reply.push('…');
                    }
                } else {
                    state.reply = text;
                    state.reply_cut = false;
                }
                state.in_reply = true;
                if reading.activity.phase != drover_proto::Phase::Tool {
                    reading.working();
                }
                let reply = state.reply.clone();
                reading.text(&reply);
            }
        }
        "tool_use" => {
            state.running = state.running.saturating_add(1);
            let summary = line
                .parameters
                .as_ref()
                .map(summarize_input)
                .unwrap_or_default();
            reading.tool(line.tool_name.as_deref().unwrap_or_default(), summary);
        }
        "tool_result" => {
            state.running = state.running.saturating_sub(1);
            if line.status.as_deref() == Some("error") {
                let error = line.error.unwrap_or_default();
                if error.kind.contains("permission") || error.message.contains("permission") {
                    reading.attention(AttentionReason::PermissionDenied, &error.message);
                }
            }
            if state.running == 0 {
                reading.tool_done();
            }
        }
        "error" => {
            if line.severity.as_deref() != Some("warning") {
                reading.attention(
                    AttentionReason::Error,
                    line.message.as_deref().unwrap_or_default(),
                );
            }
        }
        "result" => {
            state.running = 0;
            if let Some(stats) = line.stats {
                let input = stats
                    .input
                    .unwrap_or(stats.input_tokens.saturating_sub(stats.cached));
                reading.activity.tokens = Tokens {
                    input,
                    output: stats.output_tokens,
                    cache_read: stats.cached,
                    cache_write: 0,
                };
            }
            if line.status.as_deref() == Some("error") {
                let error = line.error.unwrap_or_default();
                if error.kind.contains("TurnLimit") || error.kind.contains("turn_limit") {
                    reading.attention(AttentionReason::MaxTurns, &error.message);
                    reading.finished(false, Some(&error.message));
                } else {
                    reading.failed(&error.message);
                }
            } else {
                let reply = std::mem::take(&mut state.reply);
                reading.finished(
                    true,
                    Some(&reply).filter(|r| !r.is_empty()).map(|r| r.as_str()),
                );
            }
        }
        _ => return false,
    }
    true
}
