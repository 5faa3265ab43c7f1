//! `kill`: SIGKILL to the agent's process group.

use drover_proto::op::AgentRef;

use super::{after, end_restart, live, OpResult};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, agent: &AgentRef) -> OpResult {
    if let Some(ended) = end_restart(shared, agent).await? {
        return Ok(ended);
    }
    let (_, live, handle) = live(shared, agent, "kill").await?;
    live.ask_end();
    let status = handle.kill().await.map_err(supervisor_error)?;
    Ok(after(&live, &status))
}
