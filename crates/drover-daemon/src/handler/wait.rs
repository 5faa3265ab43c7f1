//! `wait`: until the agent is terminal, or a timeout.

use std::time::Duration;

use drover_proto::op::{AgentResult, WaitArgs};
use drover_proto::{ErrorBody, ErrorCode};

use super::{resolve, OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) async fn handle(shared: &Shared, args: WaitArgs) -> OpResult {
    let agent = resolve(shared, &args.agent)?;
    if agent.state().is_terminal() {
        return Ok(Reply::Agent(AgentResult { agent }));
    }
    let id = agent.id;
    let terminal = async {
        if let Some(live) = shared.live(id) {
            let mut ended = live.ended.clone();
            // An error means the observer is gone, after recording the end.
            let _ = ended.wait_for(|ended| *ended).await;
        }
        // The registry has the last word, looked up by id so a newer agent with the same name
        // is never mistaken for this one. An agent that is not live has ended: spawns claim the
        // live slot before the registry row exists.
        let agent = shared
            .store
            .agent(id)
            .map_err(store_error)?
            .ok_or_else(|| {
                ErrorBody::new(ErrorCode::NotFound, format!("agent {id} was removed"))
            })?;
        if !agent.state().is_terminal() {
            // The observer went without an end: this daemon is shutting down and leaves the
            // agent running under its holder. Not ended, so the same answer as a round that
            // ran out: the client asks again (the next daemon).
            return Err(ErrorBody::new(
                ErrorCode::Timeout,
                format!("agent {id} is still running; this daemon is shutting down"),
            ));
        }
        Ok(agent)
    };
    let agent = match args.timeout_ms {
        Some(ms) => tokio::time::timeout(Duration::from_millis(ms), terminal)
            .await
            .map_err(|_| {
                ErrorBody::new(
                    ErrorCode::Timeout,
                    format!("agent {id} still live after {ms} ms"),
                )
            })??,
        None => terminal.await?,
    };
    Ok(Reply::Agent(AgentResult { agent }))
}
