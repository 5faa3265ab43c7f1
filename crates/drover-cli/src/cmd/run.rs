//! `drover run`: spawn an agent, stream its output live, exit with its exit code (or 128 +
//! signal). Ctrl-C, SIGTERM or SIGHUP stops the agent with its grace period. With `-i`, this
//! process's stdin is forwarded to the agent, and its end closes the agent's stdin.

use anyhow::Context;
use drover_client::follow::Selection;
use drover_client::FollowOptions;
use drover_proto::Seq;
use tokio::signal::unix::{signal, Signal, SignalKind};

use std::future::Future;

use super::logs::{follow_across_restarts, Printer};
use super::spawn::SpecArgs;
use super::wait::agent_exit_status;
use super::Ctx;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    spec: SpecArgs,
    /// Prefix each line with its capture time.
    #[arg(long)]
    timestamps: bool,
}

/// The signals that make `run` stop its agent: Ctrl-C, and SIGTERM or SIGHUP as a service
/// manager or a closing terminal sends them. Listening starts when this is made, so a signal
/// that arrives while output is streaming is never lost to the default action.
struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl Interrupts {
    fn listen() -> anyhow::Result<Interrupts> {
        let listen = |kind: SignalKind| signal(kind).context("installing a signal handler");
        Ok(Interrupts {
            interrupt: listen(SignalKind::interrupt())?,
            terminate: listen(SignalKind::terminate())?,
            hangup: listen(SignalKind::hangup())?,
        })
    }

    /// The next one.
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let mut interrupts = Interrupts::listen()?;
    let client = ctx.client().await?;
    let spec = args.spec.spec(ctx.target()?.is_local())?;
    let agent = client.spawn(spec).await.context("spawning")?;
    if let Some(error) = agent.status.error() {
        anyhow::bail!("the agent failed to start: {error}");
    }
    let id = agent.id.to_string();
    let interactive = agent.spec.stdin == drover_proto::StdinMode::Pipe;
    let options = FollowOptions {
        since_seq: Some(Seq::FIRST),
        until_exit: true,
        ..FollowOptions::default()
    };
    let selection = Selection::Agents(vec![id.clone()]);
    if let Err(error) = client.follow(selection.clone(), options.clone()).await {
        // Spawned but not watchable (a PUB endpoint out of reach, say): an agent `run` cannot
        // show is not left behind unreported, nor started twice by a retry.
        let grace = Some(std::time::Duration::from_secs(2));
        let outcome = match client.stop(&id, grace).await {
            Ok(_) => format!("stopped agent {id}"),
            Err(stop) => format!("agent {id} may still be running (stopping it failed: {stop})"),
        };
        return Err(anyhow::Error::new(error).context(format!(
            "the agent started, but its output cannot be followed; {outcome}"
        )));
    }
    let printer = Printer {
        pretty: None,
        timestamps: args.timestamps,
        prefix: false,
        json: ctx.json,
        host: None,
    };
    // The output is followed as `logs -f` follows it: across a daemon restart (agents left
    // running), from the first line not yet printed, saying that the daemon went and came back.
    let mut streaming = std::pin::pin!(follow_across_restarts(
        ctx,
        ctx.client().await?,
        selection,
        options,
        &printer
    ));
    let mut forwarding = std::pin::pin!(super::stdin::forward(&client, &id));
    let mut forwarded = !interactive;
    // Ctrl-C (or SIGTERM, SIGHUP) stops the agent gracefully, like `docker run` proxies it, and
    // keeps streaming its last words; a second one leaves at once (the agent goes on stopping),
    // even while the stop is still being asked (a daemon that does not answer).
    let mut stopping: Option<std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + '_>>> =
        None;
    let mut interrupted = false;
    let client = loop {
        tokio::select! {
            streamed = &mut streaming => break streamed?,
            _ = interrupts.next() => {
                if interrupted {
                    return Ok(130);
                }
                interrupted = true;
                eprintln!("drover: stopping {id} (Ctrl-C again to leave it)");
                stopping = Some(Box::pin(stop(ctx, &id)));
            }
            stopped = async { stopping.as_mut().expect("a stop in progress").await },
                if stopping.is_some() =>
            {
                stopping = None;
                if let Err(error) = stopped {
                    eprintln!("drover: stopping {id}: {error:#}");
                }
            }
            result = &mut forwarding, if !forwarded => {
                forwarded = true;
                if let Err(error) = result {
                    eprintln!("drover: forwarding stdin to {id}: {error:#}");
                }
            }
        }
    };
    // Asked of the daemon the follow ended on (after a restart, not the first one).
    let agent = client.get(&id).await?;
    Ok(agent_exit_status(&agent))
}

/// Ask the daemon to stop `id` with its grace; one that ended meanwhile is fine (its end is
/// streamed and reported). A daemon that is away (restarting) is asked again until one answers:
/// the stop is not lost to the outage, and a second Ctrl-C still leaves meanwhile.
async fn stop(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let mut said = false;
    loop {
        let answered = match ctx.client().await {
            Ok(client) => match client.stop(id, None).await {
                Ok(_) => return Ok(()),
                Err(e) if e.code() == Some(drover_proto::ErrorCode::InvalidState) => return Ok(()),
                // The daemon's own refusal stands; anything else is no answer.
                Err(e @ drover_client::ClientError::Remote(_)) => return Err(e.into()),
                Err(_) => false,
            },
            Err(error) if super::reconnect::is_permanent(&error) => return Err(error),
            Err(_) => false,
        };
        if !answered && !said {
            said = true;
            eprintln!("drover: the daemon is away; {id} will be stopped when it is back");
        }
        tokio::time::sleep(STOP_RETRY).await;
    }
}

/// Between attempts to ask a daemon that is away to stop the agent.
const STOP_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
