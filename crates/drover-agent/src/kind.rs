//! The parsers by name, as backends and configuration name them.

/// Which output format a backend's agent prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParserKind {
    /// `claude -p --output-format stream-json --verbose`.
    ClaudeStreamJson,
    /// `codex exec --json`.
    CodexJson,
    /// `gemini -p --output-format stream-json`.
    GeminiStreamJson,
    /// `opencode run --format json`.
    OpencodeJson,
}

/// A parser name no parser has.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("unknown output parser {0:?} (known: claude-stream-json, codex-json, gemini-stream-json, opencode-json)")]
pub struct UnknownParser(pub String);

impl ParserKind {
    /// Every parser.
    pub const ALL: [ParserKind; 4] = [
        ParserKind::ClaudeStreamJson,
        ParserKind::CodexJson,
        ParserKind::GeminiStreamJson,
        ParserKind::OpencodeJson,
    ];

    /// The name backends use.
    pub fn name(self) -> &'static str {
        match self {
            ParserKind::ClaudeStreamJson => "claude-stream-json",
            ParserKind::CodexJson => "codex-json",
            ParserKind::GeminiStreamJson => "gemini-stream-json",
            ParserKind::OpencodeJson => "opencode-json",
        }
    }
}

impl std::str::FromStr for ParserKind {
    type Err = UnknownParser;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownParser(s.to_owned()))
    }
}

impl std::fmt::Display for ParserKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
