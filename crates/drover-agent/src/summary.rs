//! One-line summaries of a tool call's argument, for `current_tool` and transcripts.

use drover_proto::activity::{bounded, MAX_TOOL_SUMMARY};
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
    fn a_long_argument_is_cut() {
        let input = serde_json::json!({"command": "x".repeat(1000)});
        assert!(summarize_input(&input).len() <= MAX_TOOL_SUMMARY);
    }
}
