//! `drover signal`: any signal to the process groups of one agent, several, a selector's or
//! all.

use std::collections::BTreeMap;

use drover_proto::Op;

use super::many::{self, Applies, Outcome, Targets};
use super::Ctx;

#[derive(Clone, Debug, clap::Args)]
// clap would print the targets first; the signal comes first, as in `kill -s SIGNAL PID`.
#[command(override_usage = "drover signal [OPTIONS] <SIGNAL> <AGENTS|--selector <SELECTOR>|--all>")]
#[command(after_help = "Examples:
  drover signal USR1 s        SIGUSR1 to agent s's process group
  drover signal TSTP -l tier=web
  drover signal 15 --all")]
pub(crate) struct Args {
    /// Signal name (TERM, SIGUSR1, any case) or number (15).
    signal: String,
    #[command(flatten)]
    targets: Targets,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agents = args.targets.resolve(&client, Applies::Running).await?;
    super::many::say_if_none(ctx, &agents);
    let signal = match args.signal.parse::<i64>() {
        Ok(number) => rmpv::Value::from(number),
        Err(_) => rmpv::Value::from(args.signal.as_str()),
    };
    let name = crate::output::signal_label(&args.signal);
    let verb = format!("sent {name} to");
    let batch_args = BTreeMap::from([("signal".to_owned(), signal)]);
    let mut outcome = Outcome::default();
    for item in many::batch(&client, Op::Signal, &agents, batch_args).await? {
        match &item.info {
            Some(info) if item.ok => outcome.done(ctx, &verb, info)?,
            _ => outcome.failed_item(ctx, &item),
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
