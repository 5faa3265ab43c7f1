//! Bounding the registry: at most `max_ended_agents` ended agents are kept. Beyond that the
//! oldest ended agents are removed with their logs, exactly as by `remove` (with a `removed`
//! event), so the registry does not grow without bound with the number of agents ever run.

use std::sync::Arc;
use std::time::Duration;

use drover_proto::EventKind;
use drover_store::{Change, StoreError};
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
        // Registry queries and log deletion are blocking work.
        let pruning = Arc::clone(&shared);
        match tokio::task::spawn_blocking(move || prune(&pruning)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::error!(%error, "pruning ended agents"),
            Err(error) => tracing::error!(%error, "pruning ended agents"),
        }
    }
}

/// Remove the ended agents that ended first, beyond the limit; returns how many were removed.
/// Ordered by end time, so an agent that just ended is the last to go, never the first.
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
    // At most a batch per round: a large backlog (a lowered limit) goes over several rounds.
    let batch = u32::try_from(excess.min(PRUNE_BATCH)).unwrap_or(u32::MAX);
    let mut removed = 0;
    for id in shared.store.oldest_ended(batch)? {
        // Still being wound up by its observer (registry updated, exit not yet out): later.
        if shared.live(id).is_some() {
            continue;
        }
        let Some(agent) = shared.store.agent(id)? else {
            continue;
        };
        shared
            .events
            .commit(Change::Remove(id), EventKind::Removed, &agent)?;
        removed += 1;
    }
    if removed > 0 {
        tracing::info!(removed, limit, "removed the ended agents beyond the limit");
    }
    if excess > PRUNE_BATCH {
        shared.agent_ended.notify_one();
    }
    Ok(removed)
}

/// Agents removed per pruning round.
const PRUNE_BATCH: u64 = 256;
