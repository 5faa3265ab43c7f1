//! `drover signal`: any signal to an agent's process group.

use drover_proto::op::SignalSpec;

use super::agent_op::report;
use super::Ctx;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent id, unique id prefix, or name.
    agent: String,
    /// Signal name (TERM, SIGUSR1) or number (15).
    signal: String,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let signal = match args.signal.parse::<i32>() {
        Ok(number) => SignalSpec::Number(number),
        Err(_) => SignalSpec::Name(args.signal.clone()),
    };
    let info = client.signal(&args.agent, signal).await?;
    report(ctx, &format!("sent {} to", args.signal), &info)?;
    Ok(0)
}
