//! The fast reading against the serde reading: on every recorded line, on every line cut
//! short or with a byte changed, and on the edge cases a scanner gets wrong, whatever the fast
//! reading returns is what serde returns (and serde refuses nothing the fast reading takes).

use std::path::PathBuf;

use super::super::Line;
use super::line;

/// Read `bytes` both ways; true if the fast reading took it.
fn agree(bytes: &[u8]) -> bool {
    let slow = serde_json::from_slice::<Line<'_>>(bytes);
    match line(bytes) {
        Ok(fast) => {
            let shown = String::from_utf8_lossy(bytes);
            let slow = slow.unwrap_or_else(|e| panic!("serde refuses {shown}: {e}"));
            assert_eq!(fast, slow, "{shown}");
            true
        }
        Err(_) => false,
    }
}

/// Every recorded line of every CLI, each without its newline.
fn recorded() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/real");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for path in names {
        let bytes = std::fs::read(&path).expect("fixture");
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            out.push((name.clone(), line.to_vec()));
        }
    }
    out
}

#[test]
fn every_recorded_line_reads_as_serde_reads_it() {
    let mut session_lines = 0;
    let mut taken = 0;
    for (name, bytes) in recorded() {
        let fast = agree(&bytes);
        let value: serde_json::Value = serde_json::from_slice(&bytes).expect("recorded JSON");
        let kind = value["type"].as_str().unwrap_or_default();
        if name.starts_with("claude-") && ["assistant", "user", "stream_event"].contains(&kind) {
            session_lines += 1;
            taken += usize::from(fast);
        }
    }
    // The lines a session is made of all take the fast path.
    assert_eq!(taken, session_lines);
    assert_eq!(session_lines, 26);
}

#[test]
fn every_cut_or_altered_claude_line_reads_as_serde_reads_it() {
    const BYTES: [u8; 14] = [
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b' ', b'0', b'n', b'\t', 0x01, 0xff,
    ];
    for (name, bytes) in recorded() {
        if !name.starts_with("claude-") {
            continue;
        }
        for cut in 0..bytes.len() {
            agree(&bytes[..cut]);
        }
        // Changed bytes only where the fast reading goes: the lines it takes.
        if !agree(&bytes) {
            continue;
        }
        let mut altered = bytes.clone();
        for at in 0..bytes.len() {
            for byte in BYTES {
                altered[at] = byte;
                agree(&altered);
            }
            altered[at] = bytes[at];
        }
    }
}

#[test]
fn edge_cases_read_as_serde_reads_them() {
    // (line, whether the fast reading takes it)
    let cases: [(&str, bool); 40] = [
        // `"type"` inside a string, and nested objects with a `type` before the top-level one.
        (
            r#"{"uuid":"a \"type\":\"result\"","type":"assistant","message":{"id":"m"}}"#,
            true,
        ),
        (
            r#"{"event":{"type":"result","message":{"type":"x"}},"type":"stream_event"}"#,
            true,
        ),
        (
            r#"{"message":{"content":[{"type":"text","text":"hi"}],"type":"message"},"type":"user"}"#,
            true,
        ),
        // Escaped quotes and backslashes in values that are read and values passed over.
        (
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"a \"b\" \\ c\n"}]},"x":"\\\""}"#,
            true,
        ),
        (
            r#"{"type":"assistant","session_id":"s\u00e9\ud83d\ude00","message":{}}"#,
            true,
        ),
        (
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"\ud800"}]}}"#,
            false,
        ),
        (r#"{"type":"assistant","x":"\ud800","message":{}}"#, true),
        // Escapes where serde wants a borrowed string, escaped keys.
        (r#"{"type":"assist\u0061nt","message":{}}"#, false),
        (r#"{"ty\u0070e":"assistant","message":{}}"#, false),
        (
            r#"{"type":"assistant","message":{"content":[{"type":"t\u0065xt","text":"x"}]}}"#,
            false,
        ),
        // Duplicate fields.
        (r#"{"type":"assistant","type":"user"}"#, false),
        (
            r#"{"type":"assistant","message":{"id":"a","id":"b"}}"#,
            false,
        ),
        (
            r#"{"type":"assistant","message":{"usage":{"input_tokens":1,"input_tokens":2}}}"#,
            false,
        ),
        (r#"{"type":"user","x":1,"x":2}"#, true),
        // Types serde reads differently, nulls.
        (
            r#"{"type":"assistant","message":null,"session_id":null}"#,
            true,
        ),
        (
            r#"{"type":"assistant","message":["m","claude",[],null]}"#,
            false,
        ),
        (
            r#"{"type":"assistant","message":{"usage":{"input_tokens":null}}}"#,
            false,
        ),
        (
            r#"{"type":"assistant","message":{"usage":{"input_tokens":1.0}}}"#,
            false,
        ),
        (
            r#"{"type":"assistant","message":{"usage":{"input_tokens":-0}}}"#,
            false,
        ),
        (
            r#"{"type":"assistant","message":{"usage":null,"content":null,"id":null}}"#,
            true,
        ),
        (
            r#"{"type":"user","message":{"content":"a prompt \"quoted\""}}"#,
            true,
        ),
        (r#"{"type":"user","message":{"content":7}}"#, false),
        (
            r#"{"type":"user","message":{"content":[{"type":"tool_result","content":null,"is_error":null,"input":[1,{"a":{}}]}]}}"#,
            true,
        ),
        (
            r#"{"type":"user","message":{"content":[{"text":"no type"}]}}"#,
            false,
        ),
        (
            r#"{"type":"user","message":{"content":[{"type":"text","is_error":"yes"}]}}"#,
            false,
        ),
        (r#"{"type":7}"#, false),
        (r#"{"message":{}}"#, false),
        // Fields of the rare lines.
        (
            r#"{"type":"result","subtype":"success","num_turns":1}"#,
            false,
        ),
        (r#"{"type":"assistant","usage":{},"message":{}}"#, false),
        // Whitespace, nesting and the end of the line.
        (
            r#" { "type" : "assistant" , "message" : { "content" : [ ] } } "#,
            true,
        ),
        ("{\"type\":\t\"assistant\"}", false),
        (r#"{"type":"assistant"} {"type":"user"}"#, false),
        (r#"{"type":"assistant",}"#, false),
        (
            r#"{"type":"assistant","x":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]}"#,
            true,
        ),
        // Numbers and literals passed over.
        (
            r#"{"type":"user","a":[0,-1,2.5,1e9,-3.0E-2,true,false,null]}"#,
            true,
        ),
        (r#"{"type":"user","a":01}"#, false),
        (r#"{"type":"user","a":tru}"#, false),
        (r#"{"type":"user","a":"\q"}"#, false),
        // Truncated.
        (
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"cut"#,
            false,
        ),
        (r#"{"type":"assistant""#, false),
    ];
    for (text, fast) in cases {
        assert_eq!(agree(text.as_bytes()), fast, "{text}");
    }
    // Bytes that are not UTF-8, in a value serde passes over without checking and in one it
    // reads: the fast reading leaves both to serde.
    for bytes in [
        &b"{\"type\":\"user\",\"x\":\"\xff\"}"[..],
        &b"{\"type\":\"user\",\"session_id\":\"\xc3\"}"[..],
        &b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\",\"text\":\"\xc3\xa9\"}]}}"[..],
    ] {
        let fast = agree(bytes);
        assert_eq!(fast, std::str::from_utf8(bytes).is_ok());
    }
}
