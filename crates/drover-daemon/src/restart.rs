//! What a starting daemon does with agents the previous run left live.

use drover_proto::{AgentInfo, AgentState, AgentStatus, EventKind};
use drover_store::Change;

use crate::daemon::Shared;
use crate::error::DaemonError;

/// Complete the histories a crash of an older daemon (which stored a change and its event
/// separately) left incomplete: an agent without any stored event gets its `spawned`, and an
/// ended agent whose history stops short gets its terminal event (`exit`, or `lost` for a lost
/// one). The events are new (the next numbers); the rows are unchanged.
pub(crate) fn repair_histories(shared: &Shared) -> Result<(), DaemonError> {
    let (unannounced, unended) = shared.store.incomplete_histories()?;
    for agent in &unannounced {
        let spawned = AgentInfo {
            status: AgentStatus::Starting,
            ..agent.clone()
        };
        let change = Change::Status(agent.id, agent.status.clone());
        shared.events.commit(change, EventKind::Spawned, &spawned)?;
        tracing::warn!(agent = %agent.id, "repaired a history without `spawned`");
    }
    let ended_unannounced = unannounced.into_iter().filter(|a| a.state().is_terminal());
    for agent in unended.into_iter().chain(ended_unannounced) {
        let kind = if agent.state() == AgentState::Lost {
            EventKind::Lost
        } else {
            EventKind::Exit
        };
        let change = Change::Status(agent.id, agent.status.clone());
        shared.events.commit(change, kind, &agent)?;
        tracing::warn!(agent = %agent.id, "repaired a history without its terminal event");
    }
    Ok(())
}

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
