//! One-line summaries of a tool call's argument, for `current_tool` and transcripts.

use drover_proto::activity::{bounded, MAX_TOOL_SUMMARY};
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::reading::{one_line, one_line_into};
use crate::scan::{Cursor, Scan, Str, Unsure};

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
    summarize_json(raw.get())
}

/// [`summarize_raw`] of a tool input's JSON text (already checked to be one JSON value).
pub(crate) fn summarize_json(raw: &str) -> String {
    let mut out = String::new();
    summarize_json_into(raw, &mut out);
    out
}

/// [`summarize_json`] appended to an empty `out` (the capture path reuses its buffer).
pub(crate) fn summarize_json_into(raw: &str, out: &mut String) {
    match scanned(raw) {
        Ok(Some(text)) => one_line_into(&text, MAX_TOOL_SUMMARY, out),
        _ => out.push_str(&parsed(raw)),
    }
}

/// The fields [`parsed`] reads as strings before it falls back to the tree: `KEYS` but
/// `content`.
const KNOWN: usize = KEYS.len() - 1;

/// What [`parsed`] finds among the known fields, found by the cursor without serde: the first
/// non-empty one in `KEYS` order. `None` (no such field) and [`Unsure`] (a known field that is
/// not a string or `null`, one given twice, anything the cursor leaves to serde) go to
/// [`parsed`].
fn scanned(raw: &str) -> Scan<Option<Cow<'_, str>>> {
    let mut found: [Option<Str<'_>>; KNOWN] = [None; KNOWN];
    let mut seen = [false; KNOWN];
    let mut cursor = Cursor::new(raw);
    if cursor.peek() != Some(b'{') {
        return Err(Unsure);
    }
    cursor.object(|cursor, key| {
        let Some(at) = KEYS[..KNOWN].iter().position(|k| *k == key) else {
            return cursor.value().map(drop);
        };
        if std::mem::replace(&mut seen[at], true) {
            return Err(Unsure);
        }
        if !cursor.null()? {
            found[at] = Some(cursor.string()?);
        }
        Ok(())
    })?;
    cursor.end()?;
    for string in found.into_iter().flatten() {
        let text = string.text()?;
        if !text.is_empty() {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// [`summarize_json`] by serde: the known fields as borrowed strings, else the tree.
fn parsed(raw: &str) -> String {
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
    if let Ok(known) = serde_json::from_str::<Known<'_>>(raw) {
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
    serde_json::from_str::<Value>(raw)
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
    fn the_scanned_summary_is_the_parsed_summary() {
        for input in [
            r#"{"command":"echo hi"}"#,
            r#"{"description":"list","command":"ls -la\n/tmp"}"#,
            r#"{"command":"","cmd":null,"file_path":"a \"b\""}"#,
            r#"{"command":"a","command":"b"}"#,
            r#"{"command":null,"command":"b"}"#,
            r#"{"cmd":["bash","-lc","echo hi"]}"#,
            r#"{"n":3,"pattern":"fn main"}"#,
            r#"{"n":{"command":"inner"},"url":"https://x"}"#,
            r#"{"content":"only content"}"#,
            r#"{"prompt":"\ud800"}"#,
            r#"{"path":"\u00e9"}"#,
            r#"{ "path" : "spaced" }"#,
            "{\"path\":\t\"tab\"}",
            r#"["ls","-la"]"#,
            r#""a string""#,
            r#"{}"#,
        ] {
            let scanned = scanned(input).ok().flatten();
            if let Some(text) = &scanned {
                assert_eq!(
                    bounded(&one_line(text), MAX_TOOL_SUMMARY),
                    parsed(input),
                    "{input}"
                );
            }
            let raw: Box<RawValue> = serde_json::from_str(input).expect("raw");
            assert_eq!(summarize_raw(&raw), parsed(input), "{input}");
        }
        assert_eq!(
            scanned(r#"{"x":1,"file_path":"","path":"p"}"#),
            Ok(Some(Cow::Borrowed("p")))
        );
        assert_eq!(scanned(r#"{"command":7}"#), Err(Unsure));
    }

    #[test]
    fn a_long_argument_is_cut() {
        let input = serde_json::json!({"command": "x".repeat(1000)});
        assert!(summarize_input(&input).len() <= MAX_TOOL_SUMMARY);
    }
}
