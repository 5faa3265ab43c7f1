//! `close_stdin`: close the agent's stdin once queued bytes are written.

use drover_proto::op::{AgentRef, EmptyResult};

use super::{live, OpResult, Reply};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, agent: &AgentRef) -> OpResult {
    let (_, _, handle) = live(shared, agent, "close stdin of").await?;
    handle.close_stdin().await.map_err(supervisor_error)?;
    Ok(Reply::Empty(EmptyResult {}))
}
