//! `wait`: until the agent is terminal, or a timeout.

use std::time::Duration;

use drover_proto::op::{AgentResult, WaitArgs};
use drover_proto::{ErrorBody, ErrorCode};

use super::{resolve, OpResult, Reply};
use crate::daemon::Shared;

pub(crate) async fn handle(shared: &Shared, args: WaitArgs) -> OpResult {
    let agent = resolve(shared, &args.agent)?;
    if agent.state().is_terminal() {
        return Ok(Reply::Agent(AgentResult { agent }));
    }
    let id = agent.id;
    let terminal = async {
        if let Some(live) = shared.live(id) {
            let mut watch = live.info.clone();
            // An error means the observer is gone, which happens only after it recorded the
            // terminal state; the registry then has it.
            let _ = watch.wait_for(|info| info.state().is_terminal()).await;
        }
        resolve(shared, &args.agent)
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
