//! `drover wait`: block until an agent ends, exiting with its exit code.

use std::time::Duration;

use drover_proto::AgentInfo;

use super::Ctx;
use crate::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent id, unique id prefix, or name.
    agent: String,
    /// Give up after this long (exit status of `timeout`).
    #[arg(long, value_parser = crate::duration::parse)]
    timeout: Option<Duration>,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let agent = client.wait(&args.agent, args.timeout).await?;
    if ctx.json {
        output::json(&agent)?;
    } else {
        let detail = output::status_detail(&agent);
        crate::outln!("{} {detail}", agent.state().as_str())?;
    }
    Ok(agent_exit_status(&agent))
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
