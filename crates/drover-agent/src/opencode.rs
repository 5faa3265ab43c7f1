//! `opencode run --format json` (sst/opencode).
//!
//! Source: opencode's `run` command (`packages/opencode/src/cli/cmd/run.ts`, the `--format
//! json` branch, which prints one `{"type","timestamp","sessionID",...}` object per line:
//! `step_start`, `text`, `tool_use` (once the tool is done: `part.state.status` is `completed`
//! or `error`), `step_finish` (`part.reason`, `part.cost`, `part.tokens{input,output,
//! reasoning,cache{read,write}}`) and `error` (`error{name,data{message}}`)), checked against
//! transcripts recorded from `opencode-ai` 1.18.33 (`tests/fixtures/real/`).
//!
//! `turns` counts steps (one model call each); tokens and cost sum the steps'.

use drover_proto::{AttentionReason, Tokens, Usd};
use serde::Deserialize;
use serde_json::Value;

use crate::reading::Reading;
use crate::summarize_input;

#[derive(Debug, Default)]
pub(crate) struct State {
    /// The latest text part: the run's result when it stops.
    last_text: Option<String>,
    /// Sum of the steps' costs.
    cost: Usd,
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "sessionID", default)]
    session_id: Option<String>,
    #[serde(default)]
    part: Option<Part>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Part {
    text: Option<String>,
    tool: Option<String>,
    state: Option<ToolState>,
    reason: Option<String>,
    cost: Option<f64>,
    tokens: Option<StepTokens>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ToolState {
    status: String,
    input: Option<Value>,
    error: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct StepTokens {
    input: u64,
    output: u64,
    reasoning: u64,
    cache: Cache,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(default)]
struct Cache {
    read: u64,
    write: u64,
}

pub(crate) fn line(state: &mut State, reading: &mut Reading<'_>, bytes: &[u8]) -> bool {
    let Ok(line) = serde_json::from_slice::<Line<'_>>(bytes) else {
        return false;
    };
    if let Some(id) = &line.session_id {
        reading.session(id);
    }
    let part = line.part.unwrap_or_default();
    match line.kind {
        "step_start" => {
            reading.activity.turns = reading.activity.turns.saturating_add(1);
            if reading.activity.phase != drover_proto::Phase::Tool {
                reading.working();
            }
        }
        "text" => {
            if let Some(text) = &part.text {
                reading.text(text);
                state.last_text = Some(text.clone());
            }
        }
        "reasoning" => {}
        "tool_use" => {
            let tool_state = part.state.unwrap_or_default();
            let name = part.tool.unwrap_or_default();
            let summary = tool_state
                .input
                .as_ref()
                .map(summarize_input)
                .unwrap_or_default();
            reading.tool(&name, summary.clone());
            reading.mark();
            if matches!(tool_state.status.as_str(), "completed" | "error") {
                if let Some(error) = tool_state.error.filter(|_| tool_state.status == "error") {
                    if error.contains("rejected permission") || error.contains("permission") {
                        reading.attention(
                            AttentionReason::PermissionDenied,
                            &format!("{name}: {summary}"),
                        );
                    }
                }
                reading.tool_done();
            }
        }
        "step_finish" => {
            if let Some(tokens) = part.tokens {
                let mut sum = reading.activity.tokens;
                sum.add(&Tokens {
                    input: tokens.input,
                    output: tokens.output.saturating_add(tokens.reasoning),
                    cache_read: tokens.cache.read,
                    cache_write: tokens.cache.write,
                });
                reading.activity.tokens = sum;
            }
            if let Some(cost) = part.cost {
                state.cost = state.cost.saturating_add(Usd::from_dollars(cost));
                reading.activity.cost_usd = Some(state.cost);
            }
            if part.reason.as_deref() != Some("tool-calls") {
                let result = state.last_text.take();
                reading.finished(true, result.as_deref());
            }
        }
        "error" => {
            let message = line.error.as_ref().map(error_message).unwrap_or_default();
            reading.failed(&message);
        }
        _ => return false,
    }
    true
}

/// `{"name": "APIError", "data": {"message": "..."}}`, or whatever shape: its message.
fn error_message(error: &Value) -> String {
    error
        .get("data")
        .and_then(|d| d.get("message"))
        .or_else(|| error.get("message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| error.get("name").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| error.to_string())
}
