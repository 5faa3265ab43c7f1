//! `drover prune`: remove ended agents (and their logs), by age and selector.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::Op;

use super::many::{self, Applies, Outcome};
use super::Ctx;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover prune                          every ended agent
  drover prune --older-than 1h          ended more than an hour ago
  drover prune -l team=a --older-than 10m")]
pub(crate) struct Args {
    /// Only agents that ended at least this long ago (e.g. 10m, 2h).
    #[arg(long, value_parser = crate::duration::parse)]
    older_than: Option<Duration>,
    /// Only agents whose labels match (repeatable): k=v, k!=v, 'k in (a,b)', k, !k.
    #[arg(
        long = "selector",
        visible_alias = "label",
        short = 'l',
        value_name = "SELECTOR"
    )]
    selector: Vec<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let cutoff = args
        .older_than
        .map(|age| drover_proto::now_ns() - i64::try_from(age.as_nanos()).unwrap_or(i64::MAX));
    let agents: Vec<String> = many::select(&client, &args.selector, Applies::Ended)
        .await?
        .into_iter()
        .filter(|agent| {
            // An agent that never started has no end time: its creation counts.
            let ended = agent.status.ended_at().unwrap_or(agent.created_at);
            cutoff.is_none_or(|cutoff| ended <= cutoff)
        })
        .map(|agent| agent.id.to_string())
        .collect();
    let mut outcome = Outcome::default();
    let mut removed = 0usize;
    for item in many::batch(&client, Op::Remove, &agents, BTreeMap::new()).await? {
        if item.ok {
            removed += 1;
            if ctx.json {
                outcome.done_ref(ctx, "removed", &item.agent.0, &item.agent.0)?;
            }
        } else {
            outcome.failed_item(ctx, &item);
        }
    }
    if !ctx.json {
        let noun = if removed == 1 { "agent" } else { "agents" };
        crate::outln!("removed {removed} ended {noun}")?;
    }
    outcome.finish(ctx, false)
}
