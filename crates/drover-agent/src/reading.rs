//! What the format modules share: the activity being read, and the marks that become events.

use drover_proto::activity::{
    bound, bounded, set_bounded, MAX_ACTIVITY_NAME, MAX_ACTIVITY_TEXT, MAX_ATTENTION,
    MAX_TOOL_SUMMARY,
};
use drover_proto::{Activity, Attention, AttentionReason, Phase, ToolCall};

use crate::printable::without_controls;

/// The part of an activity whose change is an event: phase, attention, final result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key {
    phase: Phase,
    attention: Vec<Attention>,
    result: Option<String>,
    is_error: bool,
}

impl Key {
    pub(crate) fn of(activity: &Activity) -> Key {
        Key {
            phase: activity.phase,
            attention: activity.attention.clone(),
            result: activity.result.clone(),
            is_error: activity.is_error,
        }
    }

    fn same(&self, activity: &Activity) -> bool {
        self.phase == activity.phase
            && self.attention == activity.attention
            && self.is_error == activity.is_error
            && self.result == activity.result
    }
}

/// One line being read into an activity.
pub(crate) struct Reading<'a> {
    pub(crate) activity: &'a mut Activity,
    /// The agent's stdin is a pipe: a finished turn waits for more input instead of ending.
    pub(crate) interactive: bool,
    pub(crate) marks: &'a mut Vec<Activity>,
    /// Most snapshots wanted; changes past it are counted in `coalesced` instead.
    pub(crate) cap: Option<usize>,
    pub(crate) coalesced: &'a mut usize,
    pub(crate) key: &'a mut Key,
    /// The last tool call cleared, kept for its buffers: an agent calls tools all session
    /// long, and each call reuses them instead of allocating.
    pub(crate) spare: &'a mut Option<ToolCall>,
}

impl Reading<'_> {
    /// Snapshot the activity as an event if its phase, attention or result changed since the
    /// last snapshot. Called after every line, and inside a line that passes through a phase
    /// (a tool that starts and ends in one line).
    pub(crate) fn mark(&mut self) {
        if !self.key.same(self.activity) {
            *self.key = Key::of(self.activity);
            if self.cap.is_none_or(|cap| self.marks.len() < cap) {
                self.marks.push(self.activity.clone());
            } else {
                *self.coalesced += 1;
            }
        }
    }

    pub(crate) fn session(&mut self, id: &str) {
        if !id.is_empty() && self.activity.session_id.as_deref() != Some(id) {
            self.activity.session_id = Some(bounded(&without_controls(id), MAX_ACTIVITY_NAME));
        }
    }

    pub(crate) fn model(&mut self, model: &str) {
        if !model.is_empty() && self.activity.model.as_deref() != Some(model) {
            self.activity.model = Some(bounded(&without_controls(model), MAX_ACTIVITY_NAME));
        }
    }

    /// The model is at work (a new turn, text, a tool finished). A finished or waiting agent
    /// that works again (another message on its stdin) leaves its last result behind.
    pub(crate) fn working(&mut self) {
        let activity = &mut *self.activity;
        if matches!(activity.phase, Phase::Waiting | Phase::Done) {
            activity.result = None;
            activity.is_error = false;
            activity.attention.clear();
        }
        activity.phase = Phase::Working;
        self.clear_tool();
    }

    /// No tool is running; the last one's buffers are kept for the next.
    fn clear_tool(&mut self) {
        if let Some(call) = self.activity.current_tool.take() {
            *self.spare = Some(call);
        }
    }

    pub(crate) fn text(&mut self, text: &str) {
        if !text.trim().is_empty() {
            let last = self.activity.last_text.get_or_insert_with(String::new);
            set_bounded(last, text, MAX_ACTIVITY_TEXT);
        }
    }

    pub(crate) fn tool(&mut self, name: &str, summary: String) {
        self.tool_with(name, |out| out.push_str(&summary));
    }

    /// A tool call started: `summary` writes the summary of its argument (at most
    /// [`MAX_TOOL_SUMMARY`] bytes, one line) into an empty buffer.
    pub(crate) fn tool_with(&mut self, name: &str, summary: impl FnOnce(&mut String)) {
        if self.activity.phase != Phase::Tool {
            self.working();
        }
        self.activity.phase = Phase::Tool;
        let mut call = self
            .activity
            .current_tool
            .take()
            .or_else(|| self.spare.take())
            .unwrap_or_default();
        set_bounded(&mut call.name, &without_controls(name), MAX_ACTIVITY_NAME);
        call.summary.clear();
        summary(&mut call.summary);
        self.activity.current_tool = Some(call);
    }

    pub(crate) fn tool_done(&mut self) {
        if self.activity.phase == Phase::Tool {
            self.activity.phase = Phase::Working;
        }
        self.clear_tool();
    }

    pub(crate) fn attention(&mut self, reason: AttentionReason, detail: &str) {
        let detail = bounded(&one_line(detail), MAX_TOOL_SUMMARY);
        let list = &mut self.activity.attention;
        if list
            .iter()
            .any(|a| a.reason == reason && a.detail == detail)
        {
            return;
        }
        if list.len() == MAX_ATTENTION {
            // The newest say most about what is needed now.
            list.remove(0);
        }
        list.push(Attention { reason, detail });
    }

    /// The agent asked a person something and waits (a question tool).
    pub(crate) fn question(&mut self, detail: &str) {
        self.attention(AttentionReason::Question, detail);
        self.activity.phase = Phase::Waiting;
    }

    /// The run (or turn) ended with `result`: `ok` is false for an error result. A result that
    /// ends with a question asks a person for one.
    pub(crate) fn finished(&mut self, ok: bool, result: Option<&str>) {
        self.clear_tool();
        let activity = &mut *self.activity;
        activity.is_error = !ok;
        if let Some(text) = result {
            activity.result = Some(bounded(text, MAX_ACTIVITY_TEXT));
        }
        activity.phase = if !ok {
            Phase::Failed
        } else if self.interactive {
            Phase::Waiting
        } else {
            Phase::Done
        };
        if ok && result.is_some_and(asks_a_question) {
            let last = result
                .and_then(|r| r.trim_end().lines().last())
                .unwrap_or_default()
                .to_owned();
            self.attention(AttentionReason::Question, &last);
        }
    }

    /// The run failed: an error result (`detail` says why).
    pub(crate) fn failed(&mut self, detail: &str) {
        self.attention(AttentionReason::Error, detail);
        self.finished(false, Some(detail));
    }
}

/// Whether a final text ends by asking something: its last line ends with `?`.
fn asks_a_question(text: &str) -> bool {
    text.trim_end().ends_with('?')
}

/// `text` on one line and bounded, appended to an empty `out`: what
/// `bounded(&one_line(text), max)` gives (for `max` up to `4 * MAX_TOOL_SUMMARY`, where
/// `one_line` stops), copying no more of it than the cut keeps, so a reused `out` never grows
/// past about `max` bytes.
pub(crate) fn one_line_into(text: &str, max: usize, out: &mut String) {
    debug_assert!(max <= 4 * MAX_TOOL_SUMMARY);
    for word in words(text) {
        let word = &*word;
        if !out.is_empty() {
            out.push(' ');
        }
        // One byte past `max` says the text is cut; the cut falls at or before `max - 3`.
        let mut end = (max + 1).saturating_sub(out.len()).min(word.len());
        while !word.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&word[..end]);
        if out.len() > max {
            break;
        }
    }
    bound(out, max);
}

/// `text` on one line: runs of whitespace (newlines included) become one space, and other
/// control characters go (a summary or a detail is printed on a terminal as it is).
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(256));
    for word in words(text) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&word);
        if out.len() > 4 * MAX_TOOL_SUMMARY {
            break;
        }
    }
    out
}

/// The words of `text` without their control characters (a word of nothing else is none).
fn words(text: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    text.split_whitespace()
        .map(without_controls)
        .filter(|word| !word.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_into_is_bounded_one_line() {
        let long_word = "é".repeat(400);
        let texts = [
            String::new(),
            "  ls   -la \n /tmp ".to_owned(),
            "word ".repeat(200),
            format!("start {long_word} end"),
            "x".repeat(MAX_TOOL_SUMMARY - 1),
            "x".repeat(MAX_TOOL_SUMMARY),
            "x".repeat(MAX_TOOL_SUMMARY + 1),
            format!("{} ab", "y".repeat(MAX_TOOL_SUMMARY - 3)),
            "日本語のテキスト ".repeat(40),
            "z".repeat(5 * MAX_TOOL_SUMMARY),
            "ls\u{1b}[2J -la \u{1b} \u{9b}1A\u{7} /tmp".to_owned(),
        ];
        let mut out = String::new();
        for text in &texts {
            for max in [0, 1, 3, 4, 10, MAX_TOOL_SUMMARY, 4 * MAX_TOOL_SUMMARY] {
                out.clear();
                one_line_into(text, max, &mut out);
                assert_eq!(out, bounded(&one_line(text), max), "{text:?} at {max}");
                assert!(!out.chars().any(char::is_control), "{out:?}");
                // The 2000-byte words are copied no further than the cut: the buffer, reused
                // all along, stays near the largest `max`.
                assert!(
                    out.capacity() <= 2 * (4 * MAX_TOOL_SUMMARY + 8),
                    "{}",
                    out.capacity()
                );
            }
        }
    }
}
