//! `pause`: SIGSTOP to the agent's process group (running agents only).

use drover_proto::op::AgentRef;

use super::{after, live, OpResult};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, agent: &AgentRef) -> OpResult {
    let (_, live, handle) = live(shared, agent, "pause").await?;
    shared.events.check_room("pause")?;
    let status = handle.pause().await.map_err(supervisor_error)?;
    Ok(after(&live, &status))
}
