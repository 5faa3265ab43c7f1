//! `drover wait`: block until agents end; exit with the agent's exit code.

use std::time::Duration;

use anyhow::Context as _;

use drover_client::Client;
use drover_proto::AgentInfo;
use futures::future::{join_all, select_all};

use super::many::{Applies, Picked, Refs, Targets};
use super::Ctx;
use crate::fleet::{self, Share, HOST_DEADLINE};
use crate::output;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "Examples:
  drover wait s                     until s ends; exit with its code
  drover wait a b c                 until all three end; exit 0 only if all exited 0
  drover wait -l job=ci             every agent labelled job=ci, ended ones included
  drover wait --any -l team=a       until the first agent labelled team=a ends (or has)
  drover wait --all                 until every live agent has ended
  drover wait s --timeout 30s       give up after 30 s (exit 9, timeout)
  drover wait b1/fix c2/fix         agents on two hosts (contexts b1 and c2)
  drover --context b1,c2 wait --any -l job=x   the first of them to end, on either host")]
pub(crate) struct Args {
    #[command(flatten)]
    targets: Targets,
    /// Give up after this long (exit status of `timeout`).
    #[arg(long, value_parser = crate::duration::parse)]
    timeout: Option<Duration>,
    /// Return when the first of the agents ends, with its exit status. Without it, `wait`
    /// returns when every one has ended, with the first non-zero exit status among them in the
    /// order given (0 if all exited 0).
    #[arg(long)]
    any: bool,
}

/// One host's part of the wait: its connection and the agents to wait for there.
struct Host {
    ctx: Ctx,
    client: Client,
    agents: Vec<Picked>,
}

/// Wait on one host or several at once (`HOST/AGENT` names, or a selector over a fleet): every
/// host's agents are waited for concurrently, so `--any` returns at the first end on any host.
/// A host that cannot be reached within [`HOST_DEADLINE`] is reported as `drover: HOST:
/// unreachable: ...` and the others are still waited for; its status (1, or the error's) is
/// the command's when every agent waited for exited 0.
pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let shares = fleet::route(ctx, args.refs())?;
    let several = shares.len() > 1 || shares.iter().any(|share| share.ctx.host.is_some());
    let picks = join_all(
        shares
            .into_iter()
            .map(|share| pick(share, &args.targets, several)),
    )
    .await;
    let mut status = 0;
    let mut hosts = Vec::new();
    for (ctx, result) in picks {
        match result {
            Ok((client, agents)) => hosts.push(Host {
                ctx,
                client,
                agents,
            }),
            Err(error) => fleet::fold(&mut status, several, ctx.host.as_deref(), Err(error))?,
        }
    }
    // In the order given: hosts in order of first mention, then each host's agents.
    let waits: Vec<_> = hosts
        .iter()
        .flat_map(|host| host.agents.iter().map(move |agent| (host, agent)))
        .map(|(host, agent)| {
            Box::pin(async move {
                let crowded = host.agents.len() >= CROWDED;
                let ended = wait_one(&host.client, &agent.reference, args.timeout, crowded).await;
                match (&host.ctx.host, ended) {
                    (_, Ok(info)) => Ok((host, info)),
                    (None, Err(error)) => Err((host, anyhow::Error::new(error))),
                    (Some(_), Err(error)) => Err((
                        host,
                        anyhow::Error::new(error)
                            .context(format!("waiting for {}", host.ctx.qualify(&agent.label))),
                    )),
                }
            })
        })
        .collect();
    if waits.is_empty() {
        // Said only when some host answered: "no agent" is not what an unreachable host said.
        if !hosts.is_empty() {
            eprintln!("drover: no agent matches");
        }
        return Ok(status);
    }
    // A host that fails while others' agents run (its daemon died, its link went) is
    // reported as `drover: HOST: ...` and its status kept; the others are still waited for.
    // What a daemon answered (its `timeout`, `not_found`) is the command's error, as before.
    let mut fold = |host: &Host, error: anyhow::Error| {
        let answered = error.chain().any(|cause| {
            matches!(
                cause.downcast_ref::<drover_client::ClientError>(),
                Some(drover_client::ClientError::Remote(_))
            )
        });
        if answered {
            return Err(error);
        }
        fleet::fold(&mut status, several, host.ctx.host.as_deref(), Err(error))
    };
    let ended: Vec<(&Host, AgentInfo)> = if args.any {
        first_ended(waits, &mut fold).await?.into_iter().collect()
    } else {
        let mut ended = Vec::new();
        for result in join_all(waits).await {
            match result {
                Ok(end) => ended.push(end),
                Err((host, error)) => fold(host, error)?,
            }
        }
        ended
    };
    report(&args, &ended)?;
    let agents = ended
        .iter()
        .map(|(_, agent)| agent_exit_status(agent))
        .find(|code| *code != 0);
    Ok(agents.unwrap_or(status))
}

/// The first of `waits` to end well; each that fails first goes to `failed` (which may end the
/// whole wait with its error), and the rest are still waited for. `None` when every one failed.
async fn first_ended<H, T, F>(
    waits: Vec<F>,
    failed: &mut impl FnMut(H, anyhow::Error) -> anyhow::Result<()>,
) -> anyhow::Result<Option<T>>
where
    F: std::future::Future<Output = Result<T, (H, anyhow::Error)>> + Unpin,
{
    let mut waits = waits;
    while !waits.is_empty() {
        let (result, _, rest) = select_all(waits).await;
        match result {
            Ok(end) => return Ok(Some(end)),
            Err((host, error)) => failed(host, error)?,
        }
        waits = rest;
    }
    Ok(None)
}

/// Agents on one host from which their waits take turns: a connection has at most
/// `MAX_IN_FLIGHT_PER_CLIENT` (64) requests in flight, and the rest queue in the client, so
/// long waits would leave the queued ones unasked (an end among them unseen by `--any`) for a
/// whole 30 s round.
const CROWDED: usize = drover_proto::limits::MAX_IN_FLIGHT_PER_CLIENT;

/// A wait of one round when crowded: every queued wait gets its turn within a few seconds.
const CROWDED_ROUND: Duration = Duration::from_secs(2);

/// Until `agent` ends (or `timeout` passes): one long wait, or, when `crowded`, rounds of
/// [`CROWDED_ROUND`] that free their slot for the next waiter in between.
async fn wait_one(
    client: &Client,
    agent: &str,
    timeout: Option<Duration>,
    crowded: bool,
) -> Result<AgentInfo, drover_client::ClientError> {
    if crowded {
        client.wait_in_rounds(agent, timeout, CROWDED_ROUND).await
    } else {
        client.wait(agent, timeout).await
    }
}

/// Connect to one share's host and resolve its agents (within [`HOST_DEADLINE`] when it is one
/// host of several, so that a dead host never holds up the rest).
async fn pick(
    share: Share,
    targets: &Targets,
    several: bool,
) -> (Ctx, anyhow::Result<(Client, Vec<Picked>)>) {
    let mut targets = targets.clone();
    if !share.refs.is_empty() {
        targets.set_refs(share.refs);
    }
    let ctx = share.ctx;
    let result = async {
        let client = if several {
            fleet::connect(&ctx).await.context("unreachable")?
        } else {
            ctx.client().await?
        };
        // A selector counts the agents that already ended too (their end is reported at once,
        // as for named agents and `kubectl wait -l`): a script's failed job is never dropped
        // for having failed before `wait` started. `--all` means the live ones.
        let applies = if targets.selector.is_empty() {
            Applies::Live
        } else {
            Applies::Any
        };
        let resolving = targets.pick(&client, applies);
        let agents = if several {
            match tokio::time::timeout(HOST_DEADLINE, resolving).await {
                Ok(agents) => agents?,
                Err(_) => anyhow::bail!(
                    "unreachable: no answer within {} ms",
                    HOST_DEADLINE.as_millis()
                ),
            }
        } else {
            resolving.await?
        };
        Ok((client, agents))
    }
    .await;
    (ctx, result)
}

/// Print what ended: one agent's as one JSON object (one named, or `--any`), several as one
/// array (each with its `host` on a fleet); in text, `STATE DETAIL`, or `LABEL STATE DETAIL`
/// a line each when several were waited for.
fn report(args: &Args, ended: &[(&Host, AgentInfo)]) -> anyhow::Result<()> {
    let one = args.targets.is_one() || args.any;
    let Some((first, _)) = ended.first() else {
        return Ok(());
    };
    if first.ctx.json {
        let items = ended
            .iter()
            .map(|(host, agent)| fleet::with_host(host.ctx.host.as_deref(), agent))
            .collect::<Result<Vec<_>, _>>()?;
        return match (one, items.first()) {
            (true, Some(item)) => output::json(item),
            _ => output::json(&items),
        };
    }
    let many = ended.len() > 1 || !args.targets.is_one();
    for (host, agent) in ended {
        // A daemon's name and message (another host's, perhaps): shown, never run.
        let detail = output::shown(output::status_detail(agent));
        if many {
            crate::outln!(
                "{} {} {detail}",
                output::shown(host.ctx.label(agent)),
                agent.state().as_str()
            )?;
        } else {
            crate::outln!("{} {detail}", agent.state().as_str())?;
        }
    }
    Ok(())
}

/// A finished agent's status as a process exit status: its code, or 128 + signal like a
/// shell, or 1 when it never ran or was lost.
pub(crate) fn agent_exit_status(agent: &AgentInfo) -> i32 {
    if let Some(code) = agent.status.exit_code() {
        return code;
    }
    if let Some(signal) = agent.status.signal() {
        return 128 + signal;
    }
    1
}

impl Refs for Args {
    fn refs(&self) -> &[String] {
        self.targets.refs()
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        self.targets.set_refs(refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::{ready, Ready};

    type Wait = Ready<Result<u32, (&'static str, anyhow::Error)>>;

    fn failing(host: &'static str) -> Wait {
        ready(Err((host, anyhow::anyhow!("{host} went away"))))
    }

    /// `wait --any` over a fleet: a host that fails first is reported and the others are still
    /// waited for (before, the first wait to finish decided, even with an error).
    #[tokio::test]
    async fn a_failed_host_is_reported_and_the_first_good_end_still_wins() {
        let mut reported = Vec::new();
        let mut failed = |host: &'static str, _error: anyhow::Error| {
            reported.push(host);
            Ok(())
        };
        let waits = vec![failing("b"), ready(Ok(7)), failing("c")];
        let first = first_ended(waits, &mut failed).await.unwrap();
        assert_eq!(first, Some(7));
        assert!(reported.len() <= 2 && !reported.is_empty(), "{reported:?}");

        let mut reported = Vec::new();
        let mut failed = |host: &'static str, _error: anyhow::Error| {
            reported.push(host);
            Ok(())
        };
        let none = first_ended(vec![failing("b"), failing("c")], &mut failed)
            .await
            .unwrap();
        assert_eq!(none, None);
        reported.sort_unstable();
        assert_eq!(reported, ["b", "c"]);

        // One host alone: its failure is the command's error, as before.
        let mut fatal = |_: &'static str, error: anyhow::Error| Err(error);
        let error = first_ended(vec![failing("b"), ready(Ok(1))], &mut fatal).await;
        assert!(error.is_err_and(|e| e.to_string() == "b went away"));
    }
}
