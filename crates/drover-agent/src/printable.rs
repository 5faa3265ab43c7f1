//! Agent text made safe to print on a terminal.
//!
//! The AI CLIs JSON-encode what they print, so an escape in a stored line is the inert text
//! `\u001b`. Reading the JSON decodes it: a model name, a tool result or a reply can then hold
//! live control sequences that move the cursor, hide text, retitle the terminal or write its
//! clipboard (OSC 52). Whatever prints decoded agent text runs it through [`printable`].

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character a terminal acts on shown as an escape (`\u{1b}`)
/// instead: the C0 controls but tab (and newline, when `lines`), DEL, the C1 controls, and the
/// bidirectional controls that reorder a line. With
/// `lines`, a `\r\n` line end is kept as `\n` (a lone `\r` would overwrite the line).
pub fn printable(text: &str, lines: bool) -> Cow<'_, str> {
    let acts = |c: char| (c.is_control() && c != '\t' && !(lines && c == '\n')) || is_bidi(c);
    if !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if lines && c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if acts(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The bidirectional embedding, override and isolate controls: they reorder what follows on
/// the line, so text can show other than what it holds ("Trojan Source").
fn is_bidi(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` without control characters: for names (a session id, a model, a tool), which have
/// no use for them.
pub(crate) fn without_controls(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().filter(|c| !c.is_control()).collect())
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_sequences_are_shown_not_run() {
        let osc52 = "done \u{1b}]52;c;cHduZWQ=\u{7} ok";
        assert_eq!(
            printable(osc52, false),
            "done \\u{1b}]52;c;cHduZWQ=\\u{7} ok"
        );
        // C1 CSI (U+009B) and DEL are controls too; tab stays.
        assert_eq!(
            printable("a\u{9b}2Jb\u{7f}\tc", false),
            "a\\u{9b}2Jb\\u{7f}\tc"
        );
        // One line: a newline would forge a row, a carriage return overwrite a prefix.
        assert_eq!(printable("m\nfake-row\rx", false), "m\\u{a}fake-row\\u{d}x");
        // Many lines: newlines and CRLF line ends stay newlines; a lone CR does not.
        assert_eq!(printable("a\r\nb\rc\n", true), "a\nb\\u{d}c\n");
        assert!(matches!(
            printable("plain text, é 日本", true),
            Cow::Borrowed(_)
        ));
        // A right-to-left override would show "txt.exe" as "exe.txt".
        assert_eq!(
            printable("a\u{202e}b\u{2066}c", true),
            "a\\u{202e}b\\u{2066}c"
        );
    }

    #[test]
    fn names_lose_their_controls() {
        assert_eq!(without_controls("claude\u{1b}[31m-x\n"), "claude[31m-x");
        assert!(matches!(without_controls("gpt-5"), Cow::Borrowed(_)));
    }
}
