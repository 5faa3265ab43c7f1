//! What a starting daemon does with agents the previous run left live.

use drover_proto::{AgentStatus, EventKind};
use drover_store::Change;

use crate::daemon::Shared;
use crate::error::DaemonError;

/// Mark every agent recorded as live `lost`: its process was owned by a daemon that is gone,
/// so this daemon cannot watch it, reap it or capture its output. Never reported as exited or
/// killed, because nobody saw how it ended. Its logs stay queryable.
pub(crate) fn mark_lost(shared: &Shared) -> Result<(), DaemonError> {
    let now = drover_proto::now_ns();
    for mut agent in shared.store.live_agents()? {
        agent.status = AgentStatus::Lost {
            pid: agent.status.pid(),
            started_at: agent.status.started_at(),
            ended_at: now,
        };
        // The state and its `lost` event are one transaction.
        let change = Change::Status(agent.id, agent.status.clone());
        shared.events.commit(change, EventKind::Lost, &agent)?;
        shared.store.close_log(agent.id);
        tracing::warn!(agent = %agent.id, "agent lost across a daemon restart");
    }
    Ok(())
}
