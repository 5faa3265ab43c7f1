//! `drover show`, and `pause`, `resume` and `kill` on one agent, several, a selector's or all.

use std::collections::BTreeMap;

use drover_proto::{AgentInfo, Op};

use super::many::{self, Applies, Outcome, Targets};
use super::Ctx;
use crate::output;

/// One agent.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct One {
    /// Agent id, handle, unique id prefix, or name (`HOST/AGENT` on another context).
    pub(crate) agent: String,
}

impl many::Refs for One {
    fn refs(&self) -> &[String] {
        std::slice::from_ref(&self.agent)
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        if let Some(agent) = refs.into_iter().next() {
            self.agent = agent;
        }
    }
}

impl many::Refs for Many {
    fn refs(&self) -> &[String] {
        self.targets.refs()
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        self.targets.set_refs(refs);
    }
}

/// One or more agents.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Many {
    #[command(flatten)]
    targets: Targets,
}

/// The past tense of a lifecycle op, for its report.
fn past(op: Op) -> &'static str {
    match op {
        Op::Pause => "paused",
        Op::Resume => "resumed",
        Op::Kill => "killed",
        Op::Stop => "stopped",
        Op::Remove => "removed",
        _ => "done",
    }
}

pub(crate) async fn run(ctx: &Ctx, op: Op, args: Many) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    // A restarting agent has no process to pause or resume; a kill cancels its restart.
    let applies = match op {
        // A selector picks the agents the verb can act on: `resume --all` resumes the paused
        // ones and says nothing of the running ones (named agents are still acted on, and
        // refused with `invalid_state` when they cannot be).
        Op::Pause => Applies::Pausable,
        Op::Resume => Applies::Resumable,
        _ => Applies::Live,
    };
    let agents = args.targets.resolve(&client, applies).await?;
    many::say_if_none(ctx, &agents);
    let mut outcome = Outcome::default();
    for item in many::batch(&client, op, &agents, BTreeMap::new()).await? {
        match &item.info {
            Some(info) if item.ok => outcome.done(ctx, past(op), info)?,
            _ => outcome.failed_item(ctx, &item),
        }
    }
    outcome.finish(ctx, args.targets.is_one())
}

/// Print the outcome of a lifecycle op on one agent.
pub(crate) fn report(ctx: &Ctx, verb: &str, agent: &AgentInfo) -> anyhow::Result<()> {
    if ctx.json {
        return output::json(agent);
    }
    let state = agent.state();
    if verb == "killed" && !state.is_terminal() {
        // The daemon answers once SIGKILL is sent, before the agent is reaped: "killed k1
        // (running)" would say two things at once.
        crate::outln!("sent SIGKILL to {} ({})", ctx.label(agent), state.as_str())?;
        return Ok(());
    }
    crate::outln!("{verb} {} ({})", ctx.label(agent), state.as_str())?;
    Ok(())
}
