//! `get`: one agent.

use drover_proto::op::{AgentRef, AgentResult};

use super::{resolve, OpResult, Reply};
use crate::daemon::Shared;

pub(crate) fn handle(shared: &Shared, agent: &AgentRef) -> OpResult {
    let agent = resolve(shared, agent)?;
    Ok(Reply::Agent(AgentResult { agent }))
}
