//! `logs --pretty` rendering of the recorded transcripts against golden files
//! (`tests/fixtures/pretty/<name>.txt`; `DROVER_UPDATE_GOLDEN=1` rewrites them after a change
//! that is meant).

use std::path::PathBuf;

use drover_agent::pretty::Pretty;
use drover_agent::ParserKind;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn render(kind: Option<ParserKind>, bytes: &[u8]) -> String {
    let mut pretty = Pretty::new(kind);
    let mut out = String::new();
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        match pretty.line(line) {
            Some(text) => out.push_str(&text),
            None => out.push_str(&String::from_utf8_lossy(line)),
        }
    }
    if pretty.open_text() {
        out.push('\n');
    }
    out
}

fn golden(name: &str, kind: ParserKind) {
    let bytes = std::fs::read(dir().join(format!("real/{name}.jsonl"))).expect("fixture");
    let got = render(Some(kind), &bytes);
    let path = dir().join(format!("pretty/{name}.txt"));
    if std::env::var_os("DROVER_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        got,
        want,
        "{name}: rendering differs from {}",
        path.display()
    );
}

#[test]
fn claude_transcripts_render_as_golden() {
    for name in [
        "claude-tool",
        "claude-permission-denial",
        "claude-max-turns",
        "claude-error",
    ] {
        golden(name, ParserKind::ClaudeStreamJson);
    }
}

#[test]
fn codex_gemini_opencode_transcripts_render_as_golden() {
    golden("codex-tool", ParserKind::CodexJson);
    golden("codex-error", ParserKind::CodexJson);
    golden("gemini-tool", ParserKind::GeminiStreamJson);
    golden("gemini-error", ParserKind::GeminiStreamJson);
    golden("opencode-tool", ParserKind::OpencodeJson);
    golden("opencode-error", ParserKind::OpencodeJson);
}

#[test]
fn lines_of_other_kinds_pass_through_untouched() {
    let raw = b"plain\n{\"type\":\"unknown\"}\n\xff bytes\n";
    assert_eq!(render(None, raw), String::from_utf8_lossy(raw));
    let mut pretty = Pretty::new(Some(ParserKind::ClaudeStreamJson));
    assert_eq!(pretty.line(b"plain\n"), None);
    assert_eq!(pretty.line(b"{\"type\":\"unknown\"}\n"), None);
}
