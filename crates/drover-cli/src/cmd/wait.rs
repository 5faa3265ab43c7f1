//! `drover wait`: block until agents end; exit with the agent's exit code.

use std::time::Duration;

use drover_proto::AgentInfo;
use futures::future::{join_all, select_all};

use super::many::{Applies, Targets};
use super::Ctx;
use crate::output;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "Examples:
  drover wait s                     until s ends; exit with its code
  drover wait a b c                 until all three end; exit 0 only if all exited 0
  drover wait --any -l team=a       until the first agent labelled team=a ends
  drover wait --all                 until every live agent has ended
  drover wait s --timeout 30s       give up after 30 s (exit 9, timeout)")]
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

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agents = args.targets.resolve(&client, Applies::Live).await?;
    if agents.is_empty() {
        eprintln!("drover: no agent matches");
        return Ok(0);
    }
    let waits = agents
        .iter()
        .map(|agent| Box::pin(client.wait(agent, args.timeout)));
    let ended: Vec<AgentInfo> = if args.any {
        let (first, _, _) = select_all(waits).await;
        vec![first?]
    } else {
        join_all(waits)
            .await
            .into_iter()
            .collect::<Result<_, _>>()?
    };
    if ctx.json {
        if args.targets.is_one() || args.any {
            output::json(&ended[0])?;
        } else {
            output::json(&ended)?;
        }
    } else {
        let many = ended.len() > 1 || !args.targets.is_one();
        for agent in &ended {
            let detail = output::status_detail(agent);
            if many {
                crate::outln!("{} {} {detail}", ctx.label(agent), agent.state().as_str())?;
            } else {
                crate::outln!("{} {detail}", agent.state().as_str())?;
            }
        }
    }
    Ok(ended
        .iter()
        .map(agent_exit_status)
        .find(|status| *status != 0)
        .unwrap_or(0))
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

impl super::many::Refs for Args {
    fn refs(&self) -> &[String] {
        super::many::Refs::refs(&self.targets)
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        super::many::Refs::set_refs(&mut self.targets, refs);
    }
}
