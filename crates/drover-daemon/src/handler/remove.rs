//! `remove`: delete a terminal agent and its logs.

use drover_proto::op::{AgentRef, EmptyResult};
use drover_proto::{ErrorBody, ErrorCode, EventKind};
use drover_store::Change;

use super::{resolve, OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared, agent: &AgentRef) -> OpResult {
    let agent = resolve(shared, agent)?;
    if !agent.state().is_terminal() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidState,
            format!(
                "cannot remove agent {}: it is {}; stop or kill it first",
                agent.id,
                agent.state().as_str()
            ),
        ));
    }
    // The row's deletion and its `removed` event are one transaction.
    shared
        .events
        .commit(Change::Remove(agent.id), EventKind::Removed, &agent)
        .map_err(store_error)?;
    Ok(Reply::Empty(EmptyResult {}))
}
