//! A [`Tracker`] reads one agent's stdout records, line by line, into its activity.

use drover_proto::{Activity, AttentionReason, Phase, ToolCall};

use crate::reading::{Key, Reading};
use crate::{claude, codex, gemini, opencode, ParserKind};

/// Longest line a tracker assembles from partial records, in bytes. A longer line (a huge tool
/// result) is skipped and counted as ignored; the log keeps it whole.
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// What feeding records did.
#[derive(Debug, Default)]
pub struct Update {
    /// The activity changed (anything: tokens, text, the ignored counter).
    pub changed: bool,
    /// Snapshots at each change of phase, attention or final result, in order: one event each.
    pub events: Vec<Activity>,
    /// Most snapshots wanted (`None`: all). Past it, changes are only counted in `coalesced`:
    /// a caller that can record only so many events is spared copying the rest.
    pub cap: Option<usize>,
    /// Changes past `cap`, not snapshotted: the latest reading differs from the last snapshot.
    pub coalesced: usize,
}

impl Update {
    /// An update that keeps at most `cap` snapshots.
    pub fn capped(cap: usize) -> Update {
        Update {
            cap: Some(cap),
            ..Update::default()
        }
    }
}

/// How the agent's process ended, for [`Tracker::end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this code.
    Exited(i32),
    /// A signal nobody asked for ended it (a `kill`, `stop` or `signal` is `Stopped`).
    Killed(i32),
    /// It ended (any way) after someone asked it to end (`stop`, `kill`, `signal`, a timeout,
    /// the daemon's shutdown): the end is what they asked for, whatever the exit code says
    /// (gemini exits 0 on SIGINT without a result).
    Stopped,
    /// It never started, or its holder was lost.
    Failed,
}

/// Per-format reading state.
#[derive(Debug)]
enum Format {
    Claude(claude::State),
    Codex(codex::State),
    Gemini(gemini::State),
    Opencode(opencode::State),
}

/// One agent's parser: the line being assembled, the activity read so far.
#[derive(Debug)]
pub struct Tracker {
    format: Format,
    activity: Activity,
    key: Key,
    interactive: bool,
    line: Vec<u8>,
    /// The line being assembled passed [`MAX_LINE`]: the rest of it is skipped.
    overflow: bool,
    /// See `Reading::spare`.
    spare_tool: Option<ToolCall>,
}

impl Tracker {
    /// A tracker for `kind`. `interactive`: the agent's stdin is a pipe, so a finished turn
    /// waits for input (`waiting`) instead of ending (`done`).
    pub fn new(kind: ParserKind, interactive: bool) -> Tracker {
        let format = match kind {
            ParserKind::ClaudeStreamJson => Format::Claude(claude::State::default()),
            ParserKind::CodexJson => Format::Codex(codex::State::default()),
            ParserKind::GeminiStreamJson => Format::Gemini(gemini::State::default()),
            ParserKind::OpencodeJson => Format::Opencode(opencode::State::default()),
        };
        let activity = Activity::new(kind.name());
        Tracker {
            format,
            key: Key::of(&activity),
            activity,
            interactive,
            line: Vec::new(),
            overflow: false,
            spare_tool: None,
        }
    }

    /// Carry what the agent's earlier runs used (a restart): this run's reading counts only its
    /// own, and reports theirs beside it.
    pub fn set_earlier_runs(&mut self, earlier: drover_proto::EarlierRuns) {
        self.activity.earlier_runs = earlier;
    }

    /// Take up `recorded`, the reading the registry kept, after reading the log again (a daemon
    /// restart): what the log no longer has (a budget removed its start: codex's thread id,
    /// claude's model, the turns and tokens counted there) is not lost. The session and model
    /// are kept when the log's rest does not say them again, the counters never go below the
    /// recorded ones, and the earlier runs are the recorded ones.
    pub fn resume(&mut self, recorded: &Activity) {
        let activity = &mut self.activity;
        if activity.session_id.is_none() {
            activity.session_id.clone_from(&recorded.session_id);
        }
        if activity.model.is_none() {
            activity.model.clone_from(&recorded.model);
        }
        activity.turns = activity.turns.max(recorded.turns);
        let (t, r) = (&mut activity.tokens, &recorded.tokens);
        t.input = t.input.max(r.input);
        t.output = t.output.max(r.output);
        t.cache_read = t.cache_read.max(r.cache_read);
        t.cache_write = t.cache_write.max(r.cache_write);
        activity.cost_usd = match (activity.cost_usd, recorded.cost_usd) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        activity.earlier_runs = recorded.earlier_runs;
    }

    /// The activity read so far.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// Feed one stdout record (`partial`: the line goes on in the next record).
    pub fn feed(&mut self, data: &[u8], partial: bool, update: &mut Update) {
        if self.line.is_empty() && !self.overflow && !partial {
            self.line_done(data, update);
            return;
        }
        if !self.overflow {
            if self.line.len() + data.len() > MAX_LINE {
                self.overflow = true;
                self.line = Vec::new();
            } else {
                self.line.extend_from_slice(data);
            }
        }
        if partial {
            return;
        }
        if std::mem::take(&mut self.overflow) {
            self.activity.ignored_lines += 1;
            update.changed = true;
        } else {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, update);
            // Keep the allocation for the next long line, unless it was huge.
            if line.capacity() <= 64 * 1024 {
                self.line = line;
                self.line.clear();
            }
        }
    }

    fn line_done(&mut self, line: &[u8], update: &mut Update) {
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        update.changed = true;
        let mut reading = Reading {
            activity: &mut self.activity,
            interactive: self.interactive,
            marks: &mut update.events,
            cap: update.cap,
            coalesced: &mut update.coalesced,
            key: &mut self.key,
            spare: &mut self.spare_tool,
        };
        let understood = line[0] == b'{'
            && match &mut self.format {
                Format::Claude(state) => claude::line(state, &mut reading, line),
                Format::Codex(state) => codex::line(state, &mut reading, line),
                Format::Gemini(state) => gemini::line(state, &mut reading, line),
                Format::Opencode(state) => opencode::line(state, &mut reading, line),
            };
        if !understood {
            reading.activity.ignored_lines += 1;
        }
        reading.mark();
    }

    /// The process ended: a phase that is not final becomes `done` (a good result, or exit code
    /// 0 without a stop) or `failed` (anything else; an error exit before any result also asks
    /// for attention).
    pub fn end(&mut self, ending: Ending) -> Update {
        let mut update = Update::default();
        if !self.line.is_empty() && !self.overflow {
            // The stream ended without a newline: its last line is still a line.
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, &mut update);
        }
        let mut reading = Reading {
            activity: &mut self.activity,
            interactive: false,
            marks: &mut update.events,
            cap: None,
            coalesced: &mut update.coalesced,
            key: &mut self.key,
            spare: &mut self.spare_tool,
        };
        let activity = &*reading.activity;
        if activity.phase == Phase::Failed {
            reading.mark();
            return update;
        }
        // A turn that ended well and then waited for input ended well.
        let ended_well = activity.phase == Phase::Done
            || (activity.phase == Phase::Waiting
                && activity.result.is_some()
                && !activity.is_error);
        reading.activity.current_tool = None;
        reading.activity.phase = match ending {
            _ if ended_well => Phase::Done,
            Ending::Exited(0) => Phase::Done,
            Ending::Exited(code) => {
                if reading.activity.result.is_none() {
                    reading.attention(
                        AttentionReason::Error,
                        &format!("exited with code {code} before a result"),
                    );
                }
                Phase::Failed
            }
            // Stopped (or killed, or signalled) on request: somebody meant it.
            Ending::Stopped | Ending::Failed => Phase::Failed,
            // A signal nobody asked for (the OOM killer, a crash): a person should look.
            Ending::Killed(signal) => {
                reading.attention(
                    AttentionReason::Error,
                    &format!("killed by signal {signal} that nobody asked for"),
                );
                Phase::Failed
            }
        };
        update.changed = true;
        reading.mark();
        update
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 calls whose ids (and message ids) are 100 KB each pin at most 128 bytes per id:
    /// before, each kept its whole id, up to a 4 MiB line, until a result came.
    #[test]
    fn ids_an_agent_makes_long_are_kept_short() {
        let mut tracker = Tracker::new(ParserKind::ClaudeStreamJson, false);
        let mut update = Update::default();
        for i in 0..64 {
            let id = format!("{i:03}{}", "x".repeat(100_000));
            let line = format!(
                r#"{{"type":"assistant","message":{{"id":"m{id}","model":"m","content":[{{"type":"tool_use","id":"t{id}","name":"Bash","input":{{}}}}]}}}}"#
            );
            tracker.feed(line.as_bytes(), false, &mut update);
        }
        assert_eq!(tracker.activity().turns, 64);
        let Format::Claude(state) = &tracker.format else {
            unreachable!("a claude tracker")
        };
        assert!(state.id_bytes() <= 65 * 128, "{}", state.id_bytes());
    }
}
