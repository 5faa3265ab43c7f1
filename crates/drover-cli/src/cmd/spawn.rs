//! `drover spawn`: start an agent in the background.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use drover_proto::{AgentInfo, AgentSpec, Restart, RestartPolicy, StdinMode};

use super::Ctx;
use crate::output;

/// What to run; shared by `spawn` and `run`.
#[derive(Debug, clap::Args)]
pub(crate) struct SpecArgs {
    /// Backend: command (default), claude, codex, gemini, opencode, aider, or one from config.
    #[arg(long, short)]
    backend: Option<String>,
    /// The task or prompt, for agent backends (passed as one argument, never through a shell).
    #[arg(long, short)]
    task: Option<String>,
    /// Model, for agent backends.
    #[arg(long, short)]
    model: Option<String>,
    /// System prompt, for agent backends that take one.
    #[arg(long)]
    system_prompt: Option<String>,
    /// Free text handed to the agent as DROVER_AGENT_CONTEXT. (`--context` names the daemon,
    /// as for every command.)
    #[arg(long, value_name = "TEXT")]
    agent_context: Option<String>,
    /// A name, unique among live agents, usable instead of the id.
    #[arg(long, short)]
    name: Option<String>,
    /// Working directory (relative paths are taken from here) [default: this directory for a
    /// local daemon; the daemon's work directory for a remote one].
    #[arg(long)]
    cwd: Option<std::path::PathBuf>,
    /// Environment variable for the agent (repeatable): K=V, or K to pass this shell's value.
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = env_var)]
    env: Vec<(String, Option<String>)>,
    /// Pass this whole environment to the agent (-e still wins).
    #[arg(long)]
    env_all: bool,
    /// Label (repeatable), for `ls --label` and `logs --label`.
    #[arg(long = "label", short = 'l', value_name = "K=V", value_parser = key_value)]
    labels: Vec<(String, String)>,
    /// Maximum runtime; then the agent is stopped gracefully (e.g. 30s, 10m).
    #[arg(long, value_parser = crate::duration::parse)]
    timeout: Option<Duration>,
    /// Give the agent a stdin pipe (for `drover send`).
    #[arg(long, short = 'i')]
    interactive: bool,
    /// Log budget for this agent: bytes of output kept (at least 65536).
    #[arg(long)]
    log_budget: Option<u64>,
    /// The signal `stop` sends first (`INT`, `SIGINT` or `2`) [default: the backend's, else
    /// TERM].
    #[arg(long, value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Start the agent again when it ends by itself: `on-failure` (a non-zero exit or a crash),
    /// `always`, or `never`; `:N` caps the restarts (`on-failure:3`), as docker's does. A
    /// stop, kill or timeout never restarts it.
    #[arg(long, value_name = "POLICY[:N]", value_parser = restart_policy)]
    restart: Option<(RestartPolicy, Option<u32>)>,
    /// The first wait before a restart; each quick failure doubles it (e.g. 500ms)
    /// [default: 1s].
    #[arg(long, value_parser = crate::duration::parse, requires = "restart")]
    restart_delay: Option<Duration>,
    /// The longest wait before a restart [default: 60s].
    #[arg(long, value_parser = crate::duration::parse, requires = "restart")]
    restart_max_delay: Option<Duration>,
    /// The command and its arguments (for the command backend): after the options, as with
    /// `docker run IMAGE CMD...`, or after `--`. Everything from the command on is its own,
    /// flags included (`drover run echo -n hi`).
    #[arg(trailing_var_arg = true)]
    argv: Vec<String>,
}

/// `on-failure`, `always`, `never`, optionally with `:N` restarts at most.
fn restart_policy(text: &str) -> Result<(RestartPolicy, Option<u32>), String> {
    let (name, most) = match text.split_once(':') {
        Some((name, most)) => {
            let most = most
                .parse::<u32>()
                .map_err(|_| format!("{most:?} is not a number of restarts"))?;
            (name, Some(most))
        }
        None => (text, None),
    };
    let policy = [
        RestartPolicy::Never,
        RestartPolicy::OnFailure,
        RestartPolicy::Always,
    ]
    .into_iter()
    .find(|p| p.as_str() == name.replace('-', "_"))
    .ok_or_else(|| format!("{name:?} is not a restart policy (on-failure, always, never)"))?;
    Ok((policy, most))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// `-e K=V`, or `-e K` for this process's value of K.
fn env_var(text: &str) -> Result<(String, Option<String>), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_owned(), Some(value.to_owned()))),
        None if !text.is_empty() => Ok((text.to_owned(), None)),
        None => Err("an empty variable name".to_owned()),
    }
}

impl SpecArgs {
    /// The spec these flags describe. Sent to a `local` daemon (same host), it starts where
    /// this process is, with this PATH (so the program is found as the shell would find it);
    /// a remote daemon starts it in its own work directory with its own PATH.
    pub(crate) fn spec(self, local: bool) -> anyhow::Result<AgentSpec> {
        let here = || std::env::current_dir().context("reading the current directory");
        let cwd = match self.cwd {
            Some(dir) if dir.is_relative() => Some(here()?.join(dir)),
            Some(dir) => Some(dir),
            None if local => Some(here()?),
            None => None,
        };
        let mut env = BTreeMap::new();
        if self.env_all {
            env.extend(
                std::env::vars_os()
                    .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
            );
        } else if local {
            if let Some(path) = std::env::var_os("PATH").and_then(|p| p.into_string().ok()) {
                env.insert("PATH".to_owned(), path);
            }
        }
        for (key, value) in self.env {
            let value = match value {
                Some(value) => value,
                None => std::env::var(&key)
                    .with_context(|| format!("-e {key}: {key} is not set here"))?,
            };
            env.insert(key, value);
        }
        Ok(AgentSpec {
            name: self.name,
            backend: self.backend,
            argv: self.argv,
            task: self.task,
            model: self.model,
            system_prompt: self.system_prompt,
            context: self.agent_context,
            env,
            cwd: cwd.map(|dir| dir.to_string_lossy().into_owned()),
            labels: self.labels.into_iter().collect(),
            stdin: if self.interactive {
                StdinMode::Pipe
            } else {
                StdinMode::Null
            },
            timeout_ms: self
                .timeout
                .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            log_budget: self.log_budget,
            stop_signal: self.stop_signal,
            parent: None,
            resume: None,
            restart: self.restart.map(|(policy, max_restarts)| {
                let defaults = Restart::default();
                Restart {
                    policy,
                    max_restarts,
                    backoff_ms: self.restart_delay.map_or(defaults.backoff_ms, millis),
                    max_backoff_ms: self.restart_max_delay.map_or(
                        defaults
                            .max_backoff_ms
                            .max(self.restart_delay.map_or(defaults.backoff_ms, millis)),
                        millis,
                    ),
                    ..defaults
                }
            }),
        })
    }
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    spec: SpecArgs,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let spec = args.spec.spec(ctx.target()?.is_local())?;
    let agent = client.spawn(spec).await.context("spawning")?;
    print(ctx, &agent)?;
    // The agent exists (its id is printed) but never ran: a failure for scripts.
    Ok(if agent.status.error().is_some() { 1 } else { 0 })
}

pub(crate) fn print(ctx: &Ctx, agent: &AgentInfo) -> anyhow::Result<()> {
    if ctx.json {
        return output::json(agent);
    }
    if let Some(error) = agent.status.error() {
        eprintln!("drover: agent {} failed to start: {error}", agent.id);
    }
    crate::outln!("{}", agent.id)?;
    Ok(())
}
