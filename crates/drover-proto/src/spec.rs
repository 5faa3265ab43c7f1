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
    /// Free text handed to the agent as `DROVER_AGENT_CONTEXT`.
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
    /// Whether the agent is started again when its process ends; never when absent. Left out
    /// of the encoding when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
}

/// Which ends of a run start the next one. An end a client asked for (`stop`, `kill`, a
/// `signal` that ends it, removal) or a `timeout_ms` never restarts the agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Never: the first end is the agent's end.
    #[default]
    Never,
    /// After a non-zero exit code or a signal nobody asked for (a crash). `on-failure` (as
    /// docker spells it) is accepted too.
    #[serde(alias = "on-failure")]
    OnFailure,
    /// After any end nobody asked for, exit code 0 included.
    Always,
}

impl RestartPolicy {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Never => "never",
            RestartPolicy::OnFailure => "on_failure",
            RestartPolicy::Always => "always",
        }
    }
}

/// A spec's restart policy. The wait before restart `n` (counting from 1 since the last run
/// that lasted `reset_after_ms`) is `backoff_ms × 2^(n−1)`, at most `max_backoff_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct Restart {
    /// Which ends restart the agent.
    pub policy: RestartPolicy,
    /// How many restarts in all; unlimited when absent.
    pub max_restarts: Option<u32>,
    /// The first wait, milliseconds (default 1 000).
    pub backoff_ms: u64,
    /// The longest wait, milliseconds (default 60 000).
    pub max_backoff_ms: u64,
    /// A run that lasts this long (milliseconds, default 600 000) resets the wait to
    /// `backoff_ms`.
    pub reset_after_ms: u64,
}

impl Default for Restart {
    fn default() -> Restart {
        Restart {
            policy: RestartPolicy::Never,
            max_restarts: None,
            backoff_ms: 1_000,
            max_backoff_ms: 60_000,
            reset_after_ms: 600_000,
        }
    }
}

impl Restart {
    /// The wait before the next run, after `quick` runs in a row that each ended before
    /// `reset_after_ms` (the one that just ended included, so at least 1).
    pub fn delay_ms(&self, quick: u32) -> u64 {
        let doublings = quick.saturating_sub(1).min(63);
        self.backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_backoff_ms)
    }
}

impl AgentSpec {
    /// The backend name, `command` when absent.
    pub fn backend_name(&self) -> &str {
        self.backend.as_deref().unwrap_or("command")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_first_up_to_the_longest() {
        let restart = Restart {
            backoff_ms: 100,
            max_backoff_ms: 1_000,
            ..Restart::default()
        };
        let waits: Vec<u64> = (1..=6).map(|quick| restart.delay_ms(quick)).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
        // 0 quick runs (never happens) waits as 1; a huge count saturates instead of overflowing.
        assert_eq!(restart.delay_ms(0), 100);
        assert_eq!(restart.delay_ms(u32::MAX), 1_000);
    }

    #[test]
    fn the_policy_is_snake_case_on_the_wire_and_accepts_dockers_spelling() {
        let decode = |s: &str| {
            let bytes = rmp_serde::to_vec(s).expect("a string");
            rmp_serde::from_slice::<RestartPolicy>(&bytes).expect("a policy")
        };
        assert_eq!(decode("on_failure"), RestartPolicy::OnFailure);
        assert_eq!(decode("on-failure"), RestartPolicy::OnFailure);
        let encoded = rmp_serde::to_vec(&RestartPolicy::OnFailure).expect("encode");
        assert_eq!(encoded, rmp_serde::to_vec("on_failure").expect("a string"));
    }
}
