//! What a client asks the daemon to run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::AgentId;

/// Where the agent's stdin comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// `/dev/null`: the agent reads end-of-file at once.
    #[default]
    Null,
    /// A pipe the daemon holds, written with `write_stdin` and closed with `close_stdin`.
    Pipe,
}

/// A spawn request's description of the agent. Every field is optional on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentSpec {
    /// A name unique among live agents, usable wherever an id is.
    pub name: Option<String>,
    /// Which backend renders the command line: `command` (the default), `claude`, `codex`,
    /// `gemini`, `opencode`, `aider`, or one the daemon's config adds.
    pub backend: Option<String>,
    /// The program and its arguments, for the `command` backend.
    pub argv: Vec<String>,
    /// The task or prompt, for agent backends (one argv element: never shell-parsed).
    pub task: Option<String>,
    /// The model, for agent backends that take one.
    pub model: Option<String>,
    /// A system prompt, for agent backends that take one.
    pub system_prompt: Option<String>,
    /// Free text handed to the agent as `DROVER_CONTEXT`.
    pub context: Option<String>,
    /// Environment overrides on top of the daemon's environment.
    pub env: BTreeMap<String, String>,
    /// Working directory; the daemon's when absent.
    pub cwd: Option<String>,
    /// Labels for selection (`list`, `batch`, followers).
    pub labels: BTreeMap<String, String>,
    /// Where stdin comes from.
    pub stdin: StdinMode,
    /// Maximum runtime; when it passes the agent is stopped gracefully.
    pub timeout_ms: Option<u64>,
    /// This agent's log budget in bytes; the daemon's default when absent.
    pub log_budget: Option<u64>,
    /// The signal `stop` (and `timeout_ms`) sends first (`"INT"`, `"SIGINT"` or `"2"`); the
    /// backend's, else SIGTERM, when absent. Left out of the encoding when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// The agent session to resume (`claude --resume <id>`), for backends that can; a spawn
    /// naming one on a backend that cannot is refused. Left out of the encoding when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<String>,
    /// The agent this one continues (`drover continue`); it must exist. Left out of the
    /// encoding when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<AgentId>,
}

impl AgentSpec {
    /// The backend name, `command` when absent.
    pub fn backend_name(&self) -> &str {
        self.backend.as_deref().unwrap_or("command")
    }
}
