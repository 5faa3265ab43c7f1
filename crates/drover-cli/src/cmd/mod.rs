//! The subcommands, one per file, dispatched by an exhaustive match.

mod agent_op;
mod auth;
mod completions;
mod context;
mod cost;
mod events;
mod health;
pub(crate) mod logs;
mod ls;
mod many;
mod prune;
pub(crate) mod reconnect;
mod resume_session;
mod rm;
mod run;
mod send;
mod serve;
mod show;
mod signal;
mod spawn;
mod stats;
mod stdin;
mod stop;
mod top;
mod wait;

use anyhow::Context;
use clap::{Parser, Subcommand};
use drover_client::{Client, ClientOptions, CurveClient, CurveKeys};
use drover_proto::Op;

/// Run fleets of command-line agents and watch them live.
#[derive(Debug, Parser)]
#[command(
    name = "drover",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:
  drover serve                                   the daemon, in the foreground
  drover run -- echo hi                          run an agent here, stream it, exit with its code
  drover spawn --name s -b claude -t 'fix the failing test'
  drover ls                                      newest first; the ID column is each handle
  drover logs -f --all                           follow everything, new agents too
  drover stop -l team=a                          every agent labelled team=a

Agents are named by id, handle, unique id prefix or name. `drover COMMAND --help` has more."
)]
pub(crate) struct Cli {
    /// The daemon's control endpoint, overriding the context's (`ipc://PATH` or
    /// `tcp://HOST:PORT`). For `serve`, the endpoint to bind [default: tcp://127.0.0.1:7710;
    /// port 0 picks a free port]. From the environment (`DROVER_CONTROL`) it gives way to a
    /// context named by `--context` or `DROVER_CONTEXT`; given as a flag it applies to that
    /// context.
    #[arg(long, global = true)]
    control: Option<String>,
    /// The context (named daemon) to talk to [default: the current one, else `local`, the
    /// local daemon's ipc socket]. See `drover context`. A comma list (`a,b,c`) or a fleet's
    /// name selects several: `ls`, `logs` and the verbs on agents then fan out over them.
    #[arg(long, global = true, env = "DROVER_CONTEXT")]
    context: Option<String>,
    /// Every stored context (not the built-in `local`), as one fleet.
    #[arg(long, global = true)]
    all_contexts: bool,
    /// Print JSON instead of human-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon in the foreground.
    #[command(after_help = "Examples:
  drover serve                                   defaults: 127.0.0.1:7710-7712, ipc socket
  drover serve --control 127.0.0.1:0 --pub 127.0.0.1:0 --http 127.0.0.1:0 --state-dir ./state
  drover serve --config /etc/drover.toml --work-dir /srv/agents")]
    Serve(serve::Args),
    /// Start an agent in the background and print its id.
    #[command(after_help = "Examples:
  drover spawn --name s -- sleep 100             a command, here, with this PATH
  drover spawn -b claude -t 'fix the failing test' -m sonnet -l team=a
  drover spawn -i --name c -- cat                with a stdin pipe (see drover send)
  drover spawn --cwd ../repo -e TOKEN --timeout 30m -- make test")]
    Spawn(spawn::Args),
    /// Start an agent, stream its output, and exit with its exit code.
    #[command(after_help = "Examples:
  drover run echo hi                             exit status is the agent's
  drover run -- echo hi                          the same (`--` ends drover's options)
  echo x | drover run -i -- cat                  stdin forwarded, end-of-file included
  drover run -b codex -t 'add a test' --timeout 10m
  (Ctrl-C, SIGTERM or SIGHUP stop the agent; a second Ctrl-C leaves it running)")]
    Run(run::Args),
    /// List agents (also `ps`, as in docker).
    #[command(alias = "list", alias = "ps")]
    Ls(ls::Args),
    /// Show one agent in detail (also `inspect`, as in docker).
    #[command(
        alias = "inspect",
        after_help = "Examples:
  drover show s                                  by name
  drover show 456789ab                           by handle (the ID column of ls)
  drover --json show s | jq .status"
    )]
    Show(agent_op::One),
    /// Print an agent's logs (`-f` to follow live).
    #[command(after_help = "Examples:
  drover logs s                                  everything kept
  drover logs -f s                               follow until it ends
  drover logs -f --all                           every agent, new ones too, [name]-prefixed
  drover logs -l team=a -n 20                    the last 20 lines of each agent labelled team=a
  drover logs s --since 10m --until 2026-12-02T11:00:00Z -t")]
    Logs(logs::Args),
    /// Pause agents (SIGSTOP to their process groups).
    #[command(after_help = "Examples:
  drover pause s
  drover pause -l team=a                         every live agent labelled team=a
  drover pause --all")]
    Pause(agent_op::Many),
    /// Resume paused agents (SIGCONT).
    #[command(after_help = "Examples:
  drover resume s
  drover resume -l 'team in (a,b)'
  drover resume --all")]
    Resume(agent_op::Many),
    /// Stop agents: SIGTERM, then SIGKILL after the grace period.
    Stop(stop::Args),
    /// Kill agents (SIGKILL to their process groups).
    #[command(after_help = "Examples:
  drover kill s
  drover kill a b c
  drover kill -l '!keep'                         every live agent without the label keep")]
    Kill(agent_op::Many),
    /// Send any signal to agents' process groups.
    Signal(signal::Args),
    /// Write to an agent's stdin (text, or `-` to copy this process's stdin).
    #[command(after_help = "Examples:
  drover send c 'hello'                          one line (a newline is added)
  drover send c - --close < input.txt            a file, then end-of-file
  drover send c --close                          only end-of-file")]
    Send(send::Args),
    /// Wait until agents end; exits with the agent's exit code.
    Wait(wait::Args),
    /// Start a new agent that resumes an AI agent's session with the next prompt
    /// (`claude --resume`, `codex exec resume`, `gemini --resume`, `opencode run --session`).
    Continue(resume_session::Args),
    /// What AI agents have cost and used (tokens, turns), by backend, model, day or label.
    Cost(cost::Args),
    /// Remove ended agents and their logs.
    Rm(rm::Args),
    /// Remove every ended agent (by age, by selector) and their logs.
    Prune(prune::Args),
    /// Live CPU and memory of each running agent (its whole process group, from /proc).
    Top(top::Args),
    /// Lifecycle events (`-f` to follow live; `--since N` to resume).
    #[command(after_help = "Examples:
  drover events                                  every event kept
  drover events -f                               live from now
  drover events -f --since 42                    resume after event 42
  drover events --since 1h                       the last hour")]
    Events(events::Args),
    /// Check that the daemon answers.
    #[command(after_help = "Examples:
  drover health                                  ok: drover VERSION ...
  drover --context prod health")]
    Health,
    /// Daemon counters.
    #[command(after_help = "Examples:
  drover stats
  drover --json stats | jq .spawns")]
    Stats,
    /// Name the daemons this client talks to (like `docker context`).
    Context(context::Args),
    /// Keys, allowed client keys and HTTP tokens of a daemon on this host.
    Auth(auth::Args),
    /// Shell completions for bash, zsh, fish, elvish or powershell, generated from these
    /// definitions.
    Completions(completions::Args),
    /// The man page (roff), generated from these definitions.
    #[command(after_help = "Examples:
  drover man > /usr/local/share/man/man1/drover.1
  drover man | man -l -")]
    Man,
}

/// Connection settings shared by every client subcommand.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// `--control` (or `DROVER_CONTROL` when no context is named): overrides the context's
    /// endpoint.
    control: Option<String>,
    /// `--control` was given as a flag.
    control_flag: bool,
    /// `--context`: which named daemon, or several (a comma list or a fleet).
    context: Option<String>,
    /// `--all-contexts`.
    all_contexts: bool,
    pub(crate) json: bool,
    /// Set when this is one host of several (see [`Ctx::on`]): reports name agents
    /// `HOST/NAME`.
    pub(crate) host: Option<String>,
    /// Set on each host's share of a fleet command with `--json` (see `per_host!`): its
    /// report goes here, and the fleet prints one document at the end.
    pub(crate) json_sink: Option<crate::fleet::JsonSink>,
}

/// The daemon a command talks to, resolved from `--context`, `--control` and the contexts file.
#[derive(Debug)]
pub(crate) struct Target {
    /// The context's name.
    pub(crate) name: String,
    pub(crate) context: crate::context::Context,
}

impl Target {
    /// Whether the daemon runs on this host (its ipc socket, or a loopback TCP address), so
    /// that this directory and PATH mean something to it.
    pub(crate) fn is_local(&self) -> bool {
        let control = &self.context.control;
        if control.starts_with("ipc://") {
            return true;
        }
        let host = control
            .strip_prefix("tcp://")
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'));
        match host {
            Some("localhost") => true,
            Some(host) => host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback()),
            None => false,
        }
    }
}

impl Ctx {
    /// Which daemon to talk to: `--context`, else `DROVER_CONTEXT`, else the current context,
    /// else `local`; `--control` replaces its endpoint.
    pub(crate) fn target(&self) -> anyhow::Result<Target> {
        if self.hosts()?.is_some() {
            anyhow::bail!(
                "this command talks to one daemon, and several contexts are selected: name one \
                 with --context HOST, or the agent as HOST/NAME"
            );
        }
        let contexts = crate::context::Contexts::load()?;
        let name = match &self.context {
            Some(name) => name.clone(),
            None => contexts.current_name().to_owned(),
        };
        let mut context = contexts.get(&name)?;
        if let Some(control) = &self.control {
            // One-off: another endpoint, whose daemon says where to subscribe; the context's
            // keys stay, for a TCP endpoint of the same daemon.
            context.control = normalise_endpoint(control);
            context.publish = None;
        }
        Ok(Target { name, context })
    }

    /// The contexts selected when several are (a comma list, a fleet, `--all-contexts`), in
    /// order; `None` for one context, which behaves exactly as it did before fleets.
    pub(crate) fn hosts(&self) -> anyhow::Result<Option<Vec<String>>> {
        if self.host.is_some() {
            return Ok(None);
        }
        let contexts = crate::context::Contexts::load()?;
        let hosts = if self.all_contexts {
            contexts.all_stored()?
        } else {
            let choice = match &self.context {
                Some(choice) => choice.as_str(),
                None => contexts.current_name(),
            };
            if !contexts.is_several(choice) {
                return Ok(None);
            }
            contexts.expand(choice)?
        };
        if self.control.is_some() {
            anyhow::bail!("--control names one daemon; it cannot be used with several contexts");
        }
        Ok(Some(hosts))
    }

    /// This command narrowed to the context `host`; `labelled` makes its reports name
    /// agents `HOST/NAME` (when several hosts answer in one output).
    pub(crate) fn on(&self, host: &str, labelled: bool) -> Ctx {
        Ctx {
            control: None,
            control_flag: false,
            context: Some(host.to_owned()),
            all_contexts: false,
            json: self.json,
            host: labelled.then(|| host.to_owned()),
            json_sink: None,
        }
    }

    /// An agent's label in reports: `HOST/NAME` on one host of several, else its name or
    /// handle.
    pub(crate) fn label(&self, agent: &drover_proto::AgentInfo) -> String {
        self.qualify(&output_label(agent))
    }

    /// `text` prefixed with `HOST/` on one host of several.
    pub(crate) fn qualify(&self, text: &str) -> String {
        match &self.host {
            Some(host) => format!("{host}/{text}"),
            None => text.to_owned(),
        }
    }

    /// Connect to the daemon.
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let target = self.target()?;
        let options = client_options(&target)?;
        let control = &target.context.control;
        Client::connect_with(control, options)
            .await
            .with_context(|| format!("connecting to {control} (context {})", target.name))
    }
}

fn output_label(agent: &drover_proto::AgentInfo) -> String {
    crate::output::label(agent)
}

/// `HOST:PORT` (as the ready line prints addresses) means `tcp://HOST:PORT`.
pub(crate) fn normalise_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("tcp://{endpoint}")
    }
}

/// Client options for a target: for `tcp://`, the daemon's key and this client's keypair.
fn client_options(target: &Target) -> anyhow::Result<ClientOptions> {
    let context = &target.context;
    let mut options = ClientOptions {
        pub_endpoint: context.publish.clone(),
        ..ClientOptions::default()
    };
    if !context.control.starts_with("tcp://") {
        return Ok(options);
    }
    let (Some(server_key), Some(key)) = (&context.server_key, &context.key) else {
        anyhow::bail!(
            "{} is a TCP endpoint, which needs the daemon's key and a client key: add a \
             context with `drover context add NAME --control {} --server-key KEY` (see `drover \
             auth`), or use the local daemon's ipc socket",
            context.control,
            context.control
        );
    };
    let keys = CurveKeys::read_from(key)
        .with_context(|| format!("reading the client key of context {}", target.name))?;
    options.curve = Some(CurveClient {
        server_key: server_key.clone(),
        keys,
    });
    Ok(options)
}

/// Run a command on agents once per host its agents live on (see [`crate::fleet::route`]),
/// binding `$c` to that host's [`Ctx`] and `$a` to its copy of the arguments; the status is
/// the first non-zero one. With `--json` over several hosts (and not one named agent), every
/// host's items are gathered and printed as ONE array, each item with its `host`.
macro_rules! per_host {
    ($ctx:expr, $args:expr, |$c:ident, $a:ident| $call:expr) => {{
        let args = $args;
        let shares = crate::fleet::route($ctx, many::Refs::refs(&args))?;
        let several = shares.len() > 1 || shares.iter().any(|share| share.ctx.host.is_some());
        let one = many::Refs::refs(&args).len() == 1;
        let sink = ($ctx.json && several && !one).then(crate::fleet::JsonSink::default);
        let mut status = 0;
        for share in shares {
            let mut $a = args.clone();
            if !share.refs.is_empty() {
                many::Refs::set_refs(&mut $a, share.refs);
            }
            let mut ctx = share.ctx;
            ctx.json_sink = sink.clone();
            let $c = &ctx;
            let result = $call.await;
            crate::fleet::fold(&mut status, several, $c.host.as_deref(), result)?;
        }
        if let Some(sink) = sink {
            crate::output::json(&sink.take())?;
        }
        Ok(status)
    }};
}

/// Run the parsed command line; returns the process exit status.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<i32> {
    let control_env = std::env::var("DROVER_CONTROL")
        .ok()
        .filter(|value| !value.is_empty());
    match cli.command {
        Command::Serve(args) => return serve::run(cli.control.or(control_env), args).await,
        Command::Completions(args) => return completions::completions(&args),
        Command::Man => return completions::man(),
        _ => {}
    }
    // A context named for this command beats an endpoint left in the environment (a
    // `DROVER_CONTROL` exported for another daemon must never redirect `--context prod`).
    let named = cli.context.is_some() || cli.all_contexts;
    let ctx = Ctx {
        control_flag: cli.control.is_some(),
        control: cli.control.or(control_env.filter(|_| !named)),
        context: cli.context,
        all_contexts: cli.all_contexts,
        json: cli.json,
        host: None,
        json_sink: None,
    };
    match cli.command {
        Command::Serve(_) | Command::Completions(_) | Command::Man => {
            unreachable!("handled above")
        }
        Command::Spawn(args) => spawn::run(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Ls(args) => ls::run(&ctx, args).await,
        Command::Show(args) => per_host!(&ctx, args, |c, a| show::run(c, a)),
        Command::Logs(args) => logs::run(&ctx, args).await,
        Command::Pause(args) => per_host!(&ctx, args, |c, a| agent_op::run(c, Op::Pause, a)),
        Command::Resume(args) => per_host!(&ctx, args, |c, a| agent_op::run(c, Op::Resume, a)),
        Command::Stop(args) => per_host!(&ctx, args, |c, a| stop::run(c, a)),
        Command::Kill(args) => per_host!(&ctx, args, |c, a| agent_op::run(c, Op::Kill, a)),
        Command::Signal(args) => per_host!(&ctx, args, |c, a| signal::run(c, a)),
        Command::Send(args) => send::run(&ctx, args).await,
        Command::Wait(args) => wait::run(&ctx, args).await,
        Command::Continue(args) => resume_session::run(&ctx, args).await,
        Command::Cost(args) => cost::run(&ctx, args).await,
        Command::Rm(args) => per_host!(&ctx, args, |c, a| rm::run(c, a)),
        Command::Prune(args) => prune::run(&ctx, args).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Top(args) => top::run(&ctx, args).await,
        Command::Health => health::run(&ctx).await,
        Command::Stats => stats::run(&ctx).await,
        Command::Context(args) => context::run(&ctx, args).await,
        Command::Auth(args) => auth::run(&ctx, args).await,
    }
}
