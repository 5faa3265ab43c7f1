//! `drover rm`: remove ended agents and their logs; one, several, a selector's or all.

use std::collections::BTreeMap;

use drover_proto::Op;

use super::many::{self, Applies, Outcome, Targets};
use super::Ctx;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "Examples:
  drover rm s                 remove an ended agent and its logs
  drover rm -f s              kill it first if it still runs
  drover rm -l team=a         every ended agent labelled team=a
  drover prune --older-than 1h")]
pub(crate) struct Args {
    #[command(flatten)]
    targets: Targets,
    /// Kill live agents first, then remove them.
    #[arg(long, short)]
    force: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let applies = if args.force {
        Applies::Any
    } else {
        Applies::Ended
    };
    let picked = args.targets.pick(&client, applies).await?;
    let labels: std::collections::HashMap<String, String> = picked
        .iter()
        .map(|p| (p.reference.clone(), p.label.clone()))
        .collect();
    let agents: Vec<String> = picked.into_iter().map(|p| p.reference).collect();
    let mut outcome = Outcome::default();
    let mut removable = Vec::with_capacity(agents.len());
    if args.force {
        // Kill what still runs (an ended agent answers `invalid_state`: fine), then wait for
        // each to be reaped: a live agent cannot be removed.
        for item in many::batch(&client, Op::Kill, &agents, BTreeMap::new()).await? {
            let gone = item.ok
                || item
                    .error
                    .as_ref()
                    .is_some_and(|e| e.code == drover_proto::ErrorCode::InvalidState);
            if !gone {
                outcome.failed_item(ctx, &item);
                continue;
            }
            match client.wait(&item.agent.0, None).await {
                Ok(_) => removable.push(item.agent.0),
                Err(error) => outcome.failed_call(ctx, &item.agent.0, &error),
            }
        }
    } else {
        removable = agents;
    }
    for item in many::batch(&client, Op::Remove, &removable, BTreeMap::new()).await? {
        if item.ok {
            let label = labels.get(&item.agent.0).unwrap_or(&item.agent.0);
            outcome.done_ref(ctx, "removed", &item.agent.0, label)?;
        } else {
            outcome.failed_item(ctx, &item);
        }
    }
    outcome.finish(ctx, args.targets.is_one())
}

impl super::many::Refs for Args {
    fn refs(&self) -> &[String] {
        super::many::Refs::refs(&self.targets)
    }
    fn set_refs(&mut self, refs: Vec<String>) {
        super::many::Refs::set_refs(&mut self.targets, refs);
    }
}
