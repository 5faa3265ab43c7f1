//! `drover show`, `pause`, `resume` and `kill`: one call per named agent.

use drover_proto::AgentInfo;

use super::Ctx;
use crate::output;

/// One agent.
#[derive(Debug, clap::Args)]
pub(crate) struct One {
    /// Agent id, unique id prefix, or name.
    pub(crate) agent: String,
}

/// One or more agents.
#[derive(Debug, clap::Args)]
pub(crate) struct Many {
    /// Agent ids, unique id prefixes, or names.
    #[arg(required = true)]
    agents: Vec<String>,
}

/// The lifecycle op to apply.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Pause,
    Resume,
    Kill,
}

impl Op {
    fn past(self) -> &'static str {
        match self {
            Op::Pause => "paused",
            Op::Resume => "resumed",
            Op::Kill => "killed",
        }
    }
}

pub(crate) async fn run(ctx: &Ctx, op: Op, args: Many) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let mut status = 0;
    for agent in &args.agents {
        let result = match op {
            Op::Pause => client.pause(agent).await,
            Op::Resume => client.resume(agent).await,
            Op::Kill => client.kill(agent).await,
        };
        match result {
            Ok(info) => report(ctx, op.past(), &info)?,
            Err(error) => {
                eprintln!("drover: {agent}: {error}");
                if status == 0 {
                    status = error.code().map(|c| c.exit_code()).unwrap_or(1);
                }
            }
        }
    }
    Ok(status)
}

/// Print the outcome of a lifecycle op on one agent.
pub(crate) fn report(ctx: &Ctx, verb: &str, agent: &AgentInfo) -> anyhow::Result<()> {
    if ctx.json {
        return output::json(agent);
    }
    crate::outln!(
        "{verb} {} ({})",
        output::label(agent),
        agent.state().as_str()
    )?;
    Ok(())
}
