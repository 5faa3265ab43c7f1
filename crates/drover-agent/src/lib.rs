//! `drover-agent`: reading what an AI agent CLI prints.
//!
//! The agents Drover runs print structured output when run the way its backends run them:
//! `claude -p --output-format stream-json --verbose`, `codex exec --json`,
//! `gemini -p --output-format stream-json`, `opencode run --format json`. A backend names one
//! of the parsers here ([`ParserKind`]); the daemon feeds a [`Tracker`] every stdout record as
//! it is captured and publishes the [`Activity`](drover_proto::Activity) it keeps (session,
//! phase, turns, tokens, cost, tool, attention). The CLI renders the same lines as a readable
//! transcript with [`pretty`].
//!
//! Parsers only read: the stored bytes are never altered. A line a parser does not understand
//! (plain text, truncated or garbled JSON, an event kind it does not know) changes nothing but
//! the `ignored_lines` counter. Each format module cites the source its event shapes come from;
//! where a CLI's format changed between versions, both shapes are accepted.

mod claude;
mod codex;
mod gemini;
mod kind;
mod opencode;
pub mod pretty;
mod printable;
mod reading;
mod scan;
mod summary;
mod tracker;

pub use kind::{ParserKind, UnknownParser};
pub use printable::printable;
pub use summary::{summarize_input, summarize_raw};
pub use tracker::{Ending, Tracker, Update, MAX_LINE};
