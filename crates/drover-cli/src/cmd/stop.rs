//! `drover stop`: SIGTERM, then SIGKILL after the grace period.

use std::time::Duration;

use super::agent_op::report;
use super::Ctx;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent ids, unique id prefixes, or names.
    #[arg(required = true)]
    agents: Vec<String>,
    /// Time between SIGTERM and SIGKILL (e.g. 5s) [default: the daemon's, 10s].
    #[arg(long, short, value_parser = crate::duration::parse)]
    grace: Option<Duration>,
    /// Return at once instead of waiting for the agents to end.
    #[arg(long)]
    no_wait: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let mut status = 0;
    for agent in &args.agents {
        let result = match client.stop(agent, args.grace).await {
            Ok(info) if args.no_wait => Ok(info),
            Ok(info) => client.wait(&info.id.to_string(), None).await,
            Err(error) => Err(error),
        };
        match result {
            Ok(info) => report(ctx, "stopped", &info)?,
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
