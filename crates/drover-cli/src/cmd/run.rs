//! `drover run`: spawn an agent, stream its output live, exit with its exit code (or 128 +
//! signal). Ctrl-C, SIGTERM or SIGHUP stops the agent with its grace period. With `-i`, this
//! process's stdin is forwarded to the agent, and its end closes the agent's stdin.

use anyhow::Context;
use drover_client::follow::Selection;
use drover_client::FollowOptions;
use drover_proto::Seq;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::logs::{follow, Printer};
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
    let mut follower = match client
        .follow(Selection::Agents(vec![id.clone()]), options)
        .await
    {
        Ok(follower) => follower,
        Err(error) => {
            // Spawned but not watchable (a PUB endpoint out of reach, say): an agent `run`
            // cannot show is not left behind unreported, nor started twice by a retry.
            let grace = Some(std::time::Duration::from_secs(2));
            let outcome = match client.stop(&id, grace).await {
                Ok(_) => format!("stopped agent {id}"),
                Err(stop) => {
                    format!("agent {id} may still be running (stopping it failed: {stop})")
                }
            };
            return Err(anyhow::Error::new(error).context(format!(
                "the agent started, but its output cannot be followed; {outcome}"
            )));
        }
    };
    let printer = Printer {
        pretty: None,
        timestamps: args.timestamps,
        prefix: false,
        json: ctx.json,
        host: None,
    };
    // Ctrl-C (or SIGTERM, SIGHUP) stops the agent gracefully, like `docker run` proxies it, and
    // keeps streaming its last words; a second one leaves at once (the agent goes on stopping).
    let mut ended = std::collections::HashSet::new();
    let streamed = {
        let mut streaming = std::pin::pin!(follow(&mut follower, &printer, &mut ended));
        let mut forwarding = std::pin::pin!(super::stdin::forward(&client, &id));
        let mut forwarded = !interactive;
        loop {
            tokio::select! {
                streamed = &mut streaming => break Some(streamed),
                _ = interrupts.next() => break None,
                result = &mut forwarding, if !forwarded => {
                    forwarded = true;
                    if let Err(error) = result {
                        eprintln!("drover: forwarding stdin to {id}: {error:#}");
                    }
                }
            }
        }
    };
    match streamed {
        Some(result) => result?,
        None => {
            eprintln!("drover: stopping {id} (Ctrl-C again to leave it)");
            match client.stop(&id, None).await {
                Ok(_) => {}
                // It ended on its own meanwhile; drain and report that.
                Err(e) if e.code() == Some(drover_proto::ErrorCode::InvalidState) => {}
                Err(e) => return Err(e.into()),
            }
            tokio::select! {
                streamed = follow(&mut follower, &printer, &mut ended) => streamed?,
                _ = interrupts.next() => return Ok(130),
            }
        }
    }
    let agent = client.get(&id).await?;
    Ok(agent_exit_status(&agent))
}
