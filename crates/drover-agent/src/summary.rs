//! One-line summaries of a tool call's argument, for `current_tool` and transcripts.

use drover_proto::activity::{bounded, MAX_TOOL_SUMMARY};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::reading::one_line;

/// The fields that say most about a tool call, in the order they are looked for: a shell
/// command, a file, a search pattern, a URL, a description.
const KEYS: [&str; 12] = [
    "command",
    "cmd",
    "file_path",
    "path",
    "absolute_path",
    "filePath",
    "pattern",
    "query",
    "url",
    "description",
    "prompt",
    "content",
];

/// A tool input (a JSON object, usually) summarised on one line of at most
/// [`MAX_TOOL_SUMMARY`] bytes: its most telling field, else its first string, else its JSON.
pub fn summarize_input(input: &Value) -> String {
    let text = match input {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(words) if words.iter().all(Value::is_string) => words
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        Value::Object(map) => KEYS
            .iter()
            .find_map(|key| map.get(*key).and_then(as_text))
            .or_else(|| map.values().find_map(as_text))
            .unwrap_or_else(|| input.to_string()),
        other => other.to_string(),
    };
    bounded(&one_line(&text), MAX_TOOL_SUMMARY)
}

/// [`summarize_input`] of a tool input still in its JSON text: the common fields are read as
/// borrowed strings, without building a tree (the capture-path case); anything else falls back
/// to the tree.
pub fn summarize_raw(raw: &RawValue) -> String {
    #[derive(Deserialize)]
    struct Known<'a> {
        #[serde(borrow)]
        command: Option<Cow<'a, str>>,
        #[serde(borrow)]
        cmd: Option<Cow<'a, str>>,
        #[serde(borrow)]
        file_path: Option<Cow<'a, str>>,
        #[serde(borrow)]
        path: Option<Cow<'a, str>>,
        #[serde(borrow)]
        absolute_path: Option<Cow<'a, str>>,
        #[serde(rename = "filePath", borrow)]
        file_path_camel: Option<Cow<'a, str>>,
        #[serde(borrow)]
        pattern: Option<Cow<'a, str>>,
        #[serde(borrow)]
        query: Option<Cow<'a, str>>,
        #[serde(borrow)]
        url: Option<Cow<'a, str>>,
        #[serde(borrow)]
        description: Option<Cow<'a, str>>,
        #[serde(borrow)]
        prompt: Option<Cow<'a, str>>,
    }
    if let Ok(known) = serde_json::from_str::<Known<'_>>(raw.get()) {
        // In `KEYS` order.
        let first = [
            known.command,
            known.cmd,
            known.file_path,
            known.path,
            known.absolute_path,
            known.file_path_camel,
            known.pattern,
            known.query,
            known.url,
            known.description,
            known.prompt,
        ]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty());
        if let Some(text) = first {
            return bounded(&one_line(&text), MAX_TOOL_SUMMARY);
        }
    }
    serde_json::from_str::<Value>(raw.get())
        .map(|v| summarize_input(&v))
        .unwrap_or_default()
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(words) if !words.is_empty() && words.iter().all(Value::is_string) => Some(
            words
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" "),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_telling_field_wins() {
        let input = serde_json::json!({"description": "list", "command": "ls -la\n/tmp"});
        assert_eq!(summarize_input(&input), "ls -la /tmp");
        let argv = serde_json::json!(["bash", "-lc", "echo hi"]);
        assert_eq!(summarize_input(&argv), "bash -lc echo hi");
        let other = serde_json::json!({"n": 3});
        assert_eq!(summarize_input(&other), "{\"n\":3}");
    }

    #[test]
    fn the_raw_summary_is_the_tree_summary() {
        for input in [
            r#"{"description": "list", "command": "ls -la\n/tmp"}"#,
            r#"{"cmd": ["bash", "-lc", "echo hi"]}"#,
            r#"{"n": 3}"#,
            r#"{"file_path": "", "pattern": "fn main"}"#,
            r#"{"content": "only content"}"#,
        ] {
            let raw: Box<RawValue> = serde_json::from_str(input).expect("raw");
            let tree: Value = serde_json::from_str(input).expect("tree");
            assert_eq!(summarize_raw(&raw), summarize_input(&tree), "{input}");
        }
    }

    #[test]
    fn a_long_argument_is_cut() {
        let input = serde_json::json!({"command": "x".repeat(1000)});
        assert!(summarize_input(&input).len() <= MAX_TOOL_SUMMARY);
    }
}
