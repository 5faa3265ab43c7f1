//! `claude -p --output-format stream-json --verbose` (Claude Code).
//!
//! Source: Claude Code's headless-mode documentation
//! (<https://docs.claude.com/en/docs/claude-code/headless>, "Streaming JSON output") and the
//! Agent SDK's message types (`SDKMessage`: `system`/`init`, `assistant`, `user`, `result`,
//! `stream_event`), checked against transcripts recorded from `@anthropic-ai/claude-code`
//! 2.1.332 (`tests/fixtures/real/`; 2.1.197 before). One JSON object per line:
//! - `{"type":"system","subtype":"init","session_id","model","tools",...}` first;
//! - `{"type":"assistant","message":{"id","model","content":[text | tool_use | thinking],
//!   "usage"},"session_id"}`: with `--verbose` each content block of one API message comes as
//!   its own line, repeating the message `id` and its `usage`;
//! - `{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id","is_error",
//!   "content"}]}}`: a tool's result;
//! - `{"type":"result","subtype":"success"|"error_max_turns"|"error_during_execution",
//!   "is_error","num_turns","result","session_id","total_cost_usd","usage",
//!   "permission_denials":[{"tool_name","tool_input"}]}` last.
//!
//! `turns` counts distinct assistant message ids until the result's `num_turns` replaces it;
//! tokens sum each message's usage once, until the result's session totals replace them.
//!
//! The lines a session is made of are read by a validating cursor (`fast`) that takes apart
//! only the fields below and checks the rest without building anything; every other line
//! (`system`, `result`, anything the cursor is unsure of, every malformed line) is read by
//! `serde_json` into the same structs. Both readings give the same `Line` (tested).

use drover_proto::{AttentionReason, Tokens, Usd};
use std::borrow::Cow;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::reading::Reading;
use crate::summarize_input;
use crate::summary::{summarize_json, summarize_json_into};

mod fast;

/// Tool calls that ask the person running the agent a question.
const QUESTION_TOOLS: [&str; 1] = ["AskUserQuestion"];

/// Tool calls still waiting for their result: at most this many ids are remembered (a model
/// calls a handful at once).
const MAX_PENDING: usize = 64;

/// Bytes of an id kept (real ones are about 30): a longer id is known by its first
/// `MAX_ID` bytes, so 64 pending calls pin at most 8 KiB however long the ids an agent prints.
const MAX_ID: usize = 128;

/// The part of `id` that is kept and compared.
fn id_key(id: &str) -> &str {
    let mut end = id.len().min(MAX_ID);
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// The API message being read and the usage counted for it so far.
    message: Option<(String, Tokens)>,
    /// Tokens of earlier messages.
    before: Tokens,
    /// Tool calls without a result yet, each once (a handful: a list is quicker to search than
    /// a hash set is to hash).
    pending: Vec<String>,
    /// Emptied buffers of ids that got their result, reused for the next calls' ids (at most
    /// `MAX_PENDING` of at most 128 bytes: each came from `pending`).
    spare_ids: Vec<String>,
    /// The person interrupted the run (SIGINT, which `stop` sends): its error result is what
    /// they asked for, not a reason to call them.
    interrupted: bool,
}

#[cfg(test)]
impl State {
    /// Bytes of ids kept: pending calls, spare buffers and the current message's id.
    pub(crate) fn id_bytes(&self) -> usize {
        let ids = self.pending.iter().chain(&self.spare_ids);
        ids.map(String::capacity).sum::<usize>()
            + self.message.as_ref().map_or(0, |(id, _)| id.capacity())
    }
}

/// What Claude Code writes as a user message when SIGINT interrupts it.
const INTERRUPTED: &str = "[Request interrupted by user";

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    subtype: Option<&'a str>,
    #[serde(default, borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    /// A message; on a `system` line (2.1.332's `permission_denied`) a string, read as none.
    #[serde(default, borrow, deserialize_with = "message")]
    message: Option<Message<'a>>,
    /// The tool a `system` `permission_denied` line refuses.
    #[serde(default, borrow)]
    tool_name: Option<Cow<'a, str>>,
    // `result` lines.
    #[serde(default)]
    is_error: Option<bool>,
    #[serde(default)]
    num_turns: Option<u32>,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    total_cost_usd: Option<f64>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    permission_denials: Vec<Denial>,
    #[serde(default)]
    errors: Vec<Value>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Message<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    /// A list of blocks; a string (a prompt) reads as none.
    #[serde(default, borrow, deserialize_with = "blocks")]
    content: Vec<Block<'a>>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Block<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    input: Option<Json<'a>>,
    #[serde(default, borrow)]
    tool_use_id: Option<Cow<'a, str>>,
    #[serde(default)]
    is_error: Option<bool>,
    /// A tool result's content, looked at only when the result is an error.
    #[serde(default, borrow)]
    content: Option<Json<'a>>,
}

/// A value kept as its JSON text, a slice of the line (what a `&RawValue` holds), so both
/// readings of a line can hand it over.
#[derive(Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Json<'a>(&'a str);

impl<'de: 'a, 'a> Deserialize<'de> for Json<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a RawValue>::deserialize(d).map(|raw| Json(raw.get()))
    }
}

/// A line's `message`: a message object, or none for `null` or a string (the text of a
/// `system` line).
fn message<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Message<'de>>, D::Error> {
    struct Either;
    impl<'de> Visitor<'de> for Either {
        type Value = Option<Message<'de>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a message or a string")
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Message::deserialize(MapAccessDeserializer::new(map)).map(Some)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Message::deserialize(SeqAccessDeserializer::new(seq)).map(Some)
        }
    }
    d.deserialize_any(Either)
}

/// A message's `content`: its blocks, parsed in the same pass as the line; a plain string
/// (a prompt) has none.
fn blocks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Block<'de>>, D::Error> {
    struct Blocks;
    impl<'de> Visitor<'de> for Blocks {
        type Value = Vec<Block<'de>>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of content blocks or a string")
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(block) = seq.next_element()? {
                out.push(block);
            }
            Ok(out)
        }
    }
    d.deserialize_any(Blocks)
}

#[derive(Deserialize, Default, Clone, Copy)]
#[cfg_attr(test, derive(Debug, PartialEq))]
#[serde(default)]
struct Usage {
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
}

impl Usage {
    fn tokens(self) -> Tokens {
        Tokens {
            input: self.input_tokens,
            output: self.output_tokens,
            cache_read: self.cache_read_input_tokens,
            cache_write: self.cache_creation_input_tokens,
        }
    }
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(Debug, PartialEq))]
struct Denial {
    #[serde(default)]
    tool_name: String,
    #[serde(default)]
    tool_input: Value,
}

/// Read one line; false if it is not a line of this format.
pub(crate) fn line(state: &mut State, reading: &mut Reading<'_>, bytes: &[u8]) -> bool {
    // The common lines are taken apart by the cursor; whatever it is unsure of (including
    // every malformed line) is read by serde_json, as it always was.
    let line = match fast::line(bytes) {
        Ok(line) => line,
        Err(_) => match serde_json::from_slice::<Line<'_>>(bytes) {
            Ok(line) => line,
            Err(_) => return false,
        },
    };
    if let Some(id) = &line.session_id {
        reading.session(id);
    }
    match line.kind {
        "system" => {
            match line.subtype {
                Some("init") => {
                    if let Some(model) = &line.model {
                        reading.model(model);
                    }
                    reading.working();
                }
                // 2.1.332 says so before the refused tool's result: the tool as it runs
                // ("Bash: touch out.txt"), as the result's `permission_denials` will name it.
                Some("permission_denied") => {
                    let tool = match (&reading.activity.current_tool, &line.tool_name) {
                        (Some(t), Some(name)) if t.name == name.as_ref() => {
                            format!("{}: {}", t.name, t.summary)
                        }
                        (_, Some(name)) => name.clone().into_owned(),
                        (Some(t), None) => format!("{}: {}", t.name, t.summary),
                        (None, None) => "a tool".to_owned(),
                    };
                    reading.attention(AttentionReason::PermissionDenied, &tool);
                }
                _ => {}
            }
            true
        }
        "assistant" => {
            let Some(message) = line.message else {
                return false;
            };
            assistant(state, reading, message);
            true
        }
        "user" => {
            if let Some(message) = line.message {
                let interrupted = message.content.iter().any(|b| {
                    b.kind == "text"
                        && b.text
                            .as_deref()
                            .is_some_and(|t| t.starts_with(INTERRUPTED))
                });
                if interrupted {
                    state.interrupted = true;
                }
                tool_results(state, reading, message);
            }
            true
        }
        "result" => {
            result(state, reading, line);
            true
        }
        // Partial-message events (`--include-partial-messages`): the whole message follows.
        "stream_event" => true,
        _ => false,
    }
}

fn assistant(state: &mut State, reading: &mut Reading<'_>, message: Message<'_>) {
    // Claude Code reports an API error as a message from the model `<synthetic>`.
    if let Some(model) = message.model.as_deref().filter(|m| !m.starts_with('<')) {
        reading.model(model);
    }
    let id = id_key(message.id.as_deref().unwrap_or_default());
    let usage = message.usage.map(Usage::tokens).unwrap_or_default();
    match &mut state.message {
        Some((current, counted)) if current == id => *counted = usage,
        Some((current, counted)) => {
            state.before.add(counted);
            // The id's buffer is reused: one message follows another all session long.
            current.clear();
            current.push_str(id);
            *counted = usage;
            reading.activity.turns = reading.activity.turns.saturating_add(1);
        }
        None => {
            state.message = Some((id.to_owned(), usage));
            reading.activity.turns = reading.activity.turns.saturating_add(1);
        }
    }
    let mut tokens = state.before;
    if let Some((_, counted)) = &state.message {
        tokens.add(counted);
    }
    reading.activity.tokens = tokens;
    if reading.activity.phase != drover_proto::Phase::Tool {
        reading.working();
    }
    for block in message.content {
        match block.kind {
            "text" => {
                if let Some(text) = &block.text {
                    reading.text(text);
                }
            }
            "tool_use" => {
                let name = block.name.as_deref().unwrap_or_default();
                let id = id_key(block.id.as_deref().unwrap_or_default());
                if state.pending.len() < MAX_PENDING && !state.pending.iter().any(|p| p == id) {
                    let mut pending = state.spare_ids.pop().unwrap_or_default();
                    pending.push_str(id);
                    state.pending.push(pending);
                }
                if QUESTION_TOOLS.contains(&name) {
                    let summary = block
                        .input
                        .map(|input| summarize_json(input.0))
                        .unwrap_or_default();
                    reading.question(&summary);
                } else {
                    reading.tool_with(name, |out| {
                        if let Some(input) = block.input {
                            summarize_json_into(input.0, out);
                        }
                    });
                }
                reading.mark();
            }
            _ => {}
        }
    }
}

fn tool_results(state: &mut State, reading: &mut Reading<'_>, message: Message<'_>) {
    let mut any = false;
    for block in message.content {
        if block.kind != "tool_result" {
            continue;
        }
        any = true;
        if let Some(id) = block.tool_use_id.as_deref().map(id_key) {
            if let Some(at) = state.pending.iter().position(|p| p == id) {
                let mut done = state.pending.swap_remove(at);
                // Kept for the next id.
                if done.capacity() <= MAX_ID {
                    done.clear();
                    state.spare_ids.push(done);
                }
            }
        }
        if block.is_error == Some(true) {
            let text = block.content.map(result_text).unwrap_or_default();
            if is_permission_refusal(&text) {
                let tool = reading
                    .activity
                    .current_tool
                    .as_ref()
                    .map(|t| format!("{}: {}", t.name, t.summary))
                    .unwrap_or(text);
                reading.attention(AttentionReason::PermissionDenied, &tool);
            }
        }
    }
    if any && state.pending.is_empty() {
        reading.tool_done();
    }
}

/// A tool result's text: a string, or the text blocks of a list.
fn result_text(raw: Json<'_>) -> String {
    match serde_json::from_str::<Value>(raw.0) {
        Ok(Value::String(s)) => s,
        Ok(Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Claude Code answers a tool it may not use with "Claude requested permissions to use Bash,
/// but you haven't granted it yet." (other versions: "...permission to use..."; 2.1.197, for a
/// write outside the allowed directories: "touch in '...' was blocked."; 2.1.332, for a write
/// inside them: "touch in '...' needs approval."). The result's `permission_denials` is the
/// final word.
fn is_permission_refusal(text: &str) -> bool {
    text.contains("requested permissions")
        || text.contains("permission to use")
        || text.contains("was blocked")
        || text.contains("needs approval")
}

fn result(state: &mut State, reading: &mut Reading<'_>, line: Line<'_>) {
    state.pending.clear();
    let interrupted = std::mem::take(&mut state.interrupted);
    if let Some(turns) = line.num_turns {
        reading.activity.turns = turns;
    }
    // The session's totals, except after an interruption, whose result reports zeros.
    if let Some(usage) = line.usage.map(Usage::tokens).filter(|t| t.total() > 0) {
        reading.activity.tokens = usage;
    }
    if let Some(cost) = line.total_cost_usd {
        reading.activity.cost_usd = Some(Usd::from_dollars(cost));
    }
    for denial in &line.permission_denials {
        let detail = format!(
            "{}: {}",
            denial.tool_name,
            summarize_input(&denial.tool_input)
        );
        reading.attention(AttentionReason::PermissionDenied, &detail);
    }
    let subtype = line.subtype.unwrap_or("success");
    let is_error = line.is_error.unwrap_or(false) || subtype != "success";
    if subtype == "error_max_turns" {
        let detail = match line.num_turns {
            Some(n) => format!("stopped after {n} turns"),
            None => "stopped at its turn limit".to_owned(),
        };
        reading.attention(AttentionReason::MaxTurns, &detail);
        reading.finished(false, line.result.as_deref().or(Some(&detail)));
    } else if is_error && interrupted {
        reading.finished(false, Some("interrupted"));
    } else if is_error {
        let detail = line
            .result
            .clone()
            .or_else(|| line.errors.first().map(error_text))
            .unwrap_or_else(|| subtype.to_owned());
        reading.attention(AttentionReason::Error, &detail);
        reading.finished(false, Some(&detail));
    } else {
        reading.finished(true, line.result.as_deref());
    }
}

fn error_text(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}
