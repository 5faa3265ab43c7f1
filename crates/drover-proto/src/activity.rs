//! What an AI agent is doing, as read from its structured output: session, phase, turns,
//! tokens, cost, tool, and why a person is needed. The daemon fills it from a backend's parser
//! (`drover-agent`); agents of backends without a parser have none.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest `last_text` and `result` kept on the agent, in bytes (the full text stays in the
/// log): cut at a character boundary, with `…` appended.
pub const MAX_ACTIVITY_TEXT: usize = 2048;
/// Longest tool summary, in bytes.
pub const MAX_TOOL_SUMMARY: usize = 160;
/// Longest `session_id`, `model` and tool name, in bytes: they come from the agent's output.
pub const MAX_ACTIVITY_NAME: usize = 256;
/// Most attention reasons kept; past it a new one pushes out the oldest.
pub const MAX_ATTENTION: usize = 8;

/// Where an agent is in its work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// No structured output yet.
    #[default]
    Starting,
    /// The model is producing output (or being waited on).
    Working,
    /// A tool call runs (`current_tool` names it).
    Tool,
    /// The agent's turn ended but it can take more input (its stdin is a pipe), or it asked a
    /// question: a person is needed to go on.
    Waiting,
    /// Finished with a result that is not an error.
    Done,
    /// Finished with an error result, or ended without a result.
    Failed,
}

impl Phase {
    /// Every phase, in order.
    pub const ALL: [Phase; 6] = [
        Phase::Starting,
        Phase::Working,
        Phase::Tool,
        Phase::Waiting,
        Phase::Done,
        Phase::Failed,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Working => "working",
            Phase::Tool => "tool",
            Phase::Waiting => "waiting",
            Phase::Done => "done",
            Phase::Failed => "failed",
        }
    }

    /// True once the agent's work is over.
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Done | Phase::Failed)
    }
}

/// Tokens used, summed over the session as the CLI reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tokens {
    /// Input tokens not read from the prompt cache.
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

impl Tokens {
    /// Every kind added up.
    pub fn total(&self) -> u64 {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cache_read)
            .saturating_add(self.cache_write)
    }

    /// Field-wise sum.
    pub fn add(&mut self, other: &Tokens) {
        self.input = self.input.saturating_add(other.input);
        self.output = self.output.saturating_add(other.output);
        self.cache_read = self.cache_read.saturating_add(other.cache_read);
        self.cache_write = self.cache_write.saturating_add(other.cache_write);
    }
}

/// A cost in US dollars, kept as whole nanodollars so sums are exact and the type is `Eq`;
/// on the wire it is a number of dollars (`0.0079825`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(pub u64);

impl Usd {
    const PER_DOLLAR: f64 = 1e9;

    /// From dollars; negative or non-finite amounts are zero.
    pub fn from_dollars(dollars: f64) -> Usd {
        if dollars.is_finite() && dollars > 0.0 {
            Usd((dollars * Self::PER_DOLLAR).round() as u64)
        } else {
            Usd(0)
        }
    }

    /// In dollars.
    pub fn dollars(self) -> f64 {
        self.0 as f64 / Self::PER_DOLLAR
    }

    /// Sum, saturating.
    pub fn saturating_add(self, other: Usd) -> Usd {
        Usd(self.0.saturating_add(other.0))
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.dollars())
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        f64::deserialize(d).map(Usd::from_dollars)
    }
}

/// A tool call: its name and a one-line summary of its argument.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCall {
    /// The tool's name as the CLI calls it (`Bash`, `command_execution`, `run_shell_command`).
    pub name: String,
    /// Its main argument, on one line, at most [`MAX_TOOL_SUMMARY`] bytes.
    pub summary: String,
}

/// Why a person is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionReason {
    /// The agent was refused a tool it wanted (`detail` names it).
    PermissionDenied,
    /// The agent ended with an error, or an API error stopped it.
    Error,
    /// The agent stopped because it reached its turn limit.
    MaxTurns,
    /// The agent asked a question.
    Question,
}

impl AttentionReason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            AttentionReason::PermissionDenied => "permission_denied",
            AttentionReason::Error => "error",
            AttentionReason::MaxTurns => "max_turns",
            AttentionReason::Question => "question",
        }
    }
}

/// One reason a person is needed, with a short detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attention {
    /// Why.
    pub reason: AttentionReason,
    /// What exactly (a tool and its argument, an error message), at most
    /// [`MAX_TOOL_SUMMARY`] bytes.
    #[serde(default)]
    pub detail: String,
}

/// What an agent is doing. Every field has a default, so an older or newer peer's map decodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Activity {
    /// The parser that reads the agent's output (`claude-stream-json`, ...).
    pub parser: String,
    /// The CLI's session (or thread) id: what `continue` resumes.
    pub session_id: Option<String>,
    /// The model the CLI reports.
    pub model: Option<String>,
    /// Where the agent is in its work.
    pub phase: Phase,
    /// Model round trips so far (the CLI's own count once it reports one).
    pub turns: u32,
    /// Tokens used so far.
    pub tokens: Tokens,
    /// Cost so far, when the CLI reports one.
    pub cost_usd: Option<Usd>,
    /// The tool call running, while `phase` is `tool`.
    pub current_tool: Option<ToolCall>,
    /// The latest assistant text, at most [`MAX_ACTIVITY_TEXT`] bytes.
    pub last_text: Option<String>,
    /// The final result text, at most [`MAX_ACTIVITY_TEXT`] bytes (the whole text stays in the
    /// log).
    pub result: Option<String>,
    /// The final result is an error.
    pub is_error: bool,
    /// Why a person is needed; empty when nobody is.
    pub attention: Vec<Attention>,
    /// Lines of stdout the parser did not understand (plain text, truncated or unknown JSON).
    pub ignored_lines: u64,
    /// What the agent's earlier runs (a restart policy's) used; `turns`, `tokens` and
    /// `cost_usd` above count the current run. Absent for an agent's first run.
    #[serde(skip_serializing_if = "EarlierRuns::is_none")]
    pub earlier_runs: EarlierRuns,
}

/// Turns, tokens and cost of an agent's earlier runs, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EarlierRuns {
    /// How many runs.
    pub runs: u32,
    pub turns: u64,
    pub tokens: Tokens,
    /// Their cost, when the CLI reported one.
    pub cost_usd: Option<Usd>,
}

impl EarlierRuns {
    /// No earlier run (nothing to say).
    pub fn is_none(&self) -> bool {
        *self == EarlierRuns::default()
    }

    /// These runs and the one `ended` (its own counts, not its earlier runs).
    pub fn and(self, ended: &Activity) -> EarlierRuns {
        let mut tokens = self.tokens;
        tokens.add(&ended.tokens);
        EarlierRuns {
            runs: self.runs.saturating_add(1),
            turns: self.turns.saturating_add(u64::from(ended.turns)),
            tokens,
            cost_usd: add_cost(self.cost_usd, ended.cost_usd),
        }
    }
}

fn add_cost(a: Option<Usd>, b: Option<Usd>) -> Option<Usd> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    }
}

impl Activity {
    /// Turns of every run so far.
    pub fn all_turns(&self) -> u64 {
        self.earlier_runs
            .turns
            .saturating_add(u64::from(self.turns))
    }

    /// Tokens of every run so far.
    pub fn all_tokens(&self) -> Tokens {
        let mut tokens = self.earlier_runs.tokens;
        tokens.add(&self.tokens);
        tokens
    }

    /// Cost of every run so far, when a CLI reported one.
    pub fn all_cost(&self) -> Option<Usd> {
        add_cost(self.earlier_runs.cost_usd, self.cost_usd)
    }
}

impl Activity {
    /// A fresh activity for `parser`.
    pub fn new(parser: &str) -> Activity {
        Activity {
            parser: parser.to_owned(),
            ..Activity::default()
        }
    }

    /// True when a person is needed.
    pub fn needs_attention(&self) -> bool {
        !self.attention.is_empty()
    }
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` when cut.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::new();
    set_bounded(&mut out, text, max);
    out
}

/// `out` becomes [`bounded`]`(text, max)`, in its own buffer (a reading that replaces a field
/// line after line allocates once).
pub fn set_bounded(out: &mut String, text: &str, max: usize) {
    out.clear();
    if text.len() <= max {
        out.push_str(text);
        return;
    }
    out.push_str(&text[..cut_at(text, max)]);
    out.push('…');
}

/// `out` cut as [`bounded`] cuts it, in place.
pub fn bound(out: &mut String, max: usize) {
    if out.len() > max {
        out.truncate(cut_at(out, max));
        out.push('…');
    }
}

/// Where [`bounded`] cuts a text longer than `max`: room for `…`, at a character boundary.
fn cut_at(text: &str, max: usize) -> usize {
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_round_trips_as_dollars() {
        let cost = Usd::from_dollars(0.0079825);
        assert_eq!(cost, Usd(7_982_500));
        let json = rmp_serde::to_vec_named(&cost).expect("encode");
        let back: Usd = rmp_serde::from_slice(&json).expect("decode");
        assert_eq!(back, cost);
        assert_eq!(Usd::from_dollars(-1.0), Usd(0));
        assert_eq!(Usd::from_dollars(f64::NAN), Usd(0));
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded("ééééé", 6);
        assert!(cut.len() <= 6, "{cut:?}");
        assert_eq!(cut, "é…");
    }

    #[test]
    fn set_bounded_and_bound_cut_as_bounded_does() {
        let mut reused = String::from("an earlier, longer value");
        for (text, max) in [
            ("short", 10),
            ("ééééé", 6),
            ("exactly10!", 10),
            ("", 3),
            ("abc", 0),
        ] {
            set_bounded(&mut reused, text, max);
            assert_eq!(reused, bounded(text, max), "{text:?} {max}");
            let mut owned = text.to_owned();
            bound(&mut owned, max);
            assert_eq!(owned, bounded(text, max), "{text:?} {max}");
        }
    }

    #[test]
    fn an_empty_map_decodes_to_the_default() {
        let empty = rmp_serde::to_vec_named(&std::collections::BTreeMap::<String, u8>::new())
            .expect("encode");
        let activity: Activity = rmp_serde::from_slice(&empty).expect("decode");
        assert_eq!(activity, Activity::default());
    }
}
