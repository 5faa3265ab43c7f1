//! What to run and how to supervise it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the child's stdin is connected to.
///
/// `Null` is the default because most agents (`claude -p`, `codex exec`) take their task as an
/// argument and some of them wait forever on an open, empty stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StdinMode {
    /// `/dev/null`: reads see end of file at once.
    #[default]
    Null,
    /// A pipe fed by [`crate::Handle::write_stdin`].
    Pipe,
}

/// A program to run. No shell is involved: `program` is looked up on `PATH` (the overridden one
/// if `env` sets `PATH`) and `args` are passed as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
    /// Overrides on top of the daemon's inherited environment.
    pub env: Vec<(String, String)>,
    /// Working directory; `None` keeps the daemon's.
    pub cwd: Option<PathBuf>,
    pub stdin: StdinMode,
}

impl Command {
    /// A command from an argv vector (`argv[0]` is the program). An empty argv gives an empty
    /// program, which [`crate::spawn`] reports as `FailedToStart`.
    pub fn from_argv(argv: Vec<String>) -> Self {
        let mut it = argv.into_iter();
        Command {
            program: it.next().unwrap_or_default(),
            args: it.collect(),
            env: Vec::new(),
            cwd: None,
            stdin: StdinMode::Null,
        }
    }
}

/// Limits and timings of one supervised child. Every buffer here is bounded on purpose: the
/// child's output volume must never turn into daemon memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorConfig {
    /// Longest record; a longer line is cut into pieces of this size marked `partial`.
    pub max_record: usize,
    /// How long an unterminated line may wait in the buffer before it is flushed as `partial`.
    pub partial_flush: Duration,
    /// Number of chunks `write_stdin` may queue before it answers `StdinFull`.
    pub stdin_queue: usize,
    /// Wall-clock limit; when reached the agent is stopped with `runtime_grace`.
    pub max_runtime: Option<Duration>,
    /// Grace between SIGTERM and SIGKILL when `max_runtime` triggers a stop.
    pub runtime_grace: Duration,
    /// How long to keep reading the pipes after the main process is reaped (a process that left
    /// the group with `setsid` may hold them open forever).
    pub drain_timeout: Duration,
    /// Held agents only: bytes of records the holder keeps while the daemon has not stored
    /// them (it is away, or its store refuses); past this the holder stops reading the agent's
    /// output and the agent blocks on its next write.
    pub spool_limit: u64,
    /// The signal a stop sends first (then SIGKILL when the grace ends).
    pub stop_signal: i32,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            max_record: 64 * 1024,
            partial_flush: Duration::from_millis(50),
            stdin_queue: 64,
            max_runtime: None,
            runtime_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(2),
            spool_limit: 16 * 1024 * 1024,
            stop_signal: libc::SIGTERM,
        }
    }
}
