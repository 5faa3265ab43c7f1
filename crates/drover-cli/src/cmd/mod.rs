//! The subcommands, one per file, dispatched by an exhaustive match.

mod agent_op;
mod events;
mod health;
mod logs;
mod ls;
mod rm;
mod run;
mod send;
mod serve;
mod show;
mod signal;
mod spawn;
mod stats;
mod stop;
mod wait;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drover_client::{Client, ClientOptions};

/// Run fleets of command-line agents and watch them live.
#[derive(Debug, Parser)]
#[command(name = "drover", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The daemon's control endpoint [default: tcp://127.0.0.1:7710]. For `serve`, the endpoint
    /// to bind (port 0 picks a free port).
    #[arg(long, global = true, env = "DROVER_CONTROL")]
    control: Option<String>,
    /// Print JSON instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    Serve(serve::Args),
    /// Start an agent in the background and print its id.
    Spawn(spawn::Args),
    /// Start an agent, stream its output, and exit with its exit code.
    Run(run::Args),
    /// List agents.
    #[command(alias = "list")]
    Ls(ls::Args),
    /// Show one agent in detail.
    Show(agent_op::One),
    /// Print an agent's logs (`-f` to follow live).
    Logs(logs::Args),
    /// Pause an agent (SIGSTOP to its process group).
    Pause(agent_op::Many),
    /// Resume a paused agent (SIGCONT).
    Resume(agent_op::Many),
    /// Stop an agent: SIGTERM, then SIGKILL after the grace period.
    Stop(stop::Args),
    /// Kill an agent (SIGKILL to its process group).
    Kill(agent_op::Many),
    /// Send any signal to an agent's process group.
    Signal(signal::Args),
    /// Write to an agent's stdin (text, or `-` to copy this process's stdin).
    Send(send::Args),
    /// Wait until an agent ends; exits with its exit code.
    Wait(wait::Args),
    /// Remove ended agents and their logs.
    Rm(rm::Args),
    /// Lifecycle events (`-f` to follow live; `--since N` to resume).
    Events(events::Args),
    /// Check that the daemon answers.
    Health,
    /// Daemon counters.
    Stats,
}

/// Where the daemon listens unless told otherwise.
pub(crate) const DEFAULT_CONTROL: &str = "tcp://127.0.0.1:7710";

/// Connection settings shared by every client subcommand.
pub(crate) struct Ctx {
    control: String,
    pub(crate) json: bool,
}

impl Ctx {
    /// Connect to the daemon.
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        Client::connect_with(&self.control, ClientOptions::default())
            .await
            .with_context(|| format!("connecting to {}", self.control))
    }
}

/// Run the parsed command line; returns the process exit status.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<i32> {
    if let Command::Serve(args) = cli.command {
        return serve::run(cli.control, args).await;
    }
    let ctx = Ctx {
        control: cli.control.unwrap_or_else(|| DEFAULT_CONTROL.to_owned()),
        json: cli.json,
    };
    match cli.command {
        Command::Serve(_) => unreachable!("handled above"),
        Command::Spawn(args) => spawn::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Ls(args) => ls::run(&ctx, args).await,
        Command::Show(args) => show::run(&ctx, args).await,
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Pause(args) => agent_op::run(&ctx, agent_op::Op::Pause, args).await,
        Command::Resume(args) => agent_op::run(&ctx, agent_op::Op::Resume, args).await,
        Command::Stop(args) => stop::run(&ctx, args).await,
        Command::Kill(args) => agent_op::run(&ctx, agent_op::Op::Kill, args).await,
        Command::Signal(args) => signal::run(&ctx, args).await,
        Command::Send(args) => send::run(&ctx, args).await,
        Command::Wait(args) => wait::run(&ctx, args).await,
        Command::Rm(args) => rm::run(&ctx, args).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Health => health::run(&ctx).await,
        Command::Stats => stats::run(&ctx).await,
    }
}
