//! `drover stop`: SIGTERM, then SIGKILL after the grace period; to one agent, several, a
//! selector's or all.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::Op;

use super::many::{self, Applies, Outcome, Targets};
use super::Ctx;

#[derive(Clone, Debug, clap::Args)]
#[command(after_help = "Examples:
  drover stop s                     stop one agent, wait until it has ended
  drover stop -l team=a --grace 5s  every live agent labelled team=a, SIGKILL after 5 s
  drover stop --all --no-wait       every live agent; return at once")]
pub(crate) struct Args {
    #[command(flatten)]
    targets: Targets,
    /// Time between SIGTERM and SIGKILL (e.g. 5s) [default: the daemon's, 10s].
    #[arg(long, short, value_parser = crate::duration::parse)]
    grace: Option<Duration>,
    /// Return at once instead of waiting for the agents to end.
    #[arg(long)]
    no_wait: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agents = args.targets.resolve(&client, Applies::Live).await?;
    super::many::say_if_none(ctx, &agents);
    let mut batch_args = BTreeMap::new();
    if let Some(grace) = args.grace {
        let ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        batch_args.insert("grace_ms".to_owned(), rmpv::Value::from(ms));
    }
    let mut outcome = Outcome::default();
    // Every agent gets its SIGTERM first, then they are waited for: their grace periods run
    // at once.
    for item in many::batch(&client, Op::Stop, &agents, batch_args).await? {
        let Some(info) = item.info.as_ref().filter(|_| item.ok) else {
            outcome.failed_item(ctx, &item);
            continue;
        };
        if args.no_wait {
            outcome.done(ctx, "stopped", info)?;
            continue;
        }
        match client.wait(&info.id.to_string(), None).await {
            Ok(ended) => outcome.done(ctx, "stopped", &ended)?,
            Err(error) => outcome.failed_call(ctx, &item.agent.0, &error),
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
