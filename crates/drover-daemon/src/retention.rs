//! Bounding the registry: at most `max_ended_agents` ended agents are kept. Beyond that the
//! oldest ended agents are removed with their logs, exactly as by `remove` (with a `removed`
//! event), so the registry does not grow without bound with the number of agents ever run.

use std::sync::Arc;
use std::time::Duration;

use drover_proto::{AgentInfo, AgentState, EventKind};
use drover_store::{ListFilter, StoreError};
use tokio::sync::watch;

use crate::daemon::Shared;

/// Run until `stop`: prune when an agent ends (the observer notifies) and once a minute.
pub(crate) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shared.agent_ended.notified() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        if let Err(error) = prune(&shared) {
            tracing::error!(%error, "pruning ended agents");
        }
    }
}

/// Remove the oldest ended agents beyond the limit; returns how many were removed.
pub(crate) fn prune(shared: &Shared) -> Result<usize, StoreError> {
    let limit = shared.config.max_ended_agents as u64;
    let counts = shared.store.count_by_state()?;
    let ended: u64 = counts
        .iter()
        .filter(|(state, _)| state.is_terminal())
        .map(|(_, n)| n)
        .sum();
    let Some(excess) = ended.checked_sub(limit).filter(|n| *n > 0) else {
        return Ok(0);
    };
    // The oldest `excess` of each terminal state, merged: the oldest `excess` overall are
    // among them.
    let mut candidates: Vec<AgentInfo> = Vec::new();
    for state in AgentState::ALL.into_iter().filter(|s| s.is_terminal()) {
        candidates.extend(shared.store.list(&ListFilter {
            state: Some(state),
            labels: Default::default(),
            limit: Some(u32::try_from(excess).unwrap_or(u32::MAX)),
        })?);
    }
    candidates.sort_by_key(|agent| (agent.created_at, agent.id));
    let mut removed = 0;
    for agent in candidates
        .into_iter()
        .take(usize::try_from(excess).unwrap_or(usize::MAX))
    {
        shared.store.remove_agent(agent.id)?;
        shared.events.emit(EventKind::Removed, &agent);
        removed += 1;
    }
    tracing::info!(
        removed,
        limit,
        "removed the oldest ended agents beyond the limit"
    );
    Ok(removed)
}
