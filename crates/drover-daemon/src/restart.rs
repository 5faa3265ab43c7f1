//! What a starting daemon does with agents the previous run left live.

use std::collections::HashSet;
use std::sync::Arc;

use drover_proto::{AgentInfo, AgentState, AgentStatus, EventKind};
use drover_store::Change;
use drover_supervisor::{AttachError, Status};

use crate::agent::AgentObserver;
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
        let change = Change::Status(agent.id, agent.status.clone(), agent.runs());
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
        let change = Change::Status(agent.id, agent.status.clone(), agent.runs());
        shared.events.commit(change, kind, &agent)?;
        tracing::warn!(agent = %agent.id, "repaired a history without its terminal event");
    }
    Ok(())
}

/// Re-attach to every agent recorded as live: its holder still runs it (`running`), or ended
/// it while the daemon was away (the true end arrives after the spooled records, which are
/// appended with the next seqs). An agent whose holder is gone is `lost`, and its stray
/// processes (found by the `DROVER_AGENT_ID` in their environment) are killed. An agent whose
/// holder speaks an incompatible protocol is `lost` with that said, and left running.
/// Holders of agents that are no longer live (their end was recorded, the release did not
/// arrive) are released.
pub(crate) async fn reattach(shared: &Arc<Shared>) -> Result<(), DaemonError> {
    let mut gone = HashSet::new();
    let mut attached = 0usize;
    let agents = shared.store.live_agents()?;
    let mut attaching = Vec::with_capacity(agents.len());
    for agent in agents {
        let resume = shared.store.log_bounds(agent.id)?.next_seq.0;
        shared.store.open_log(agent.id);
        let tracker = crate::handler::spawn::tracker_for(shared, &agent);
        let (observer, live) = AgentObserver::new(shared, agent.clone(), tracker);
        let live = Arc::new(live);
        shared
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.id, Arc::clone(&live));
        if let Some(at) = agent.status.restart_at() {
            // Waiting to restart when the last daemon went: no holder runs it; the restart
            // goes ahead as scheduled.
            let cancelled = crate::restarting::arm(&live);
            crate::restarting::schedule(shared, observer, at, cancelled);
            attached += 1;
            continue;
        }
        let last_known = supervisor_status(&agent.status);
        // The same queue a spawn gives a piped stdin (`spawn::supervisor_config`).
        let stdin_queue = crate::handler::spawn::has_stdin_pipe(shared, &agent.spec)
            .then_some(crate::handler::spawn::STDIN_QUEUE);
        let root = shared.holders.root().to_path_buf();
        attaching.push(async move {
            let id = crate::holders::holder_name(agent.id, agent.restarts.saturating_add(1));
            let result = if shared.holders.is_held() {
                drover_supervisor::attach(&root, &id, observer, resume, last_known, stdin_queue)
                    .await
            } else {
                Err(AttachError::Gone(std::io::Error::other(
                    "this daemon runs agents without holders",
                )))
            };
            (agent, live, result)
        });
    }
    // Concurrently: each is a connect and one round trip, and a thousand agents must not
    // take a thousand round trips in a row.
    for (agent, live, result) in futures::future::join_all(attaching).await {
        match result {
            Ok(found) => {
                // Stopping when the last daemon went (a client's stop), or by now (its timeout
                // while no daemon ran): the end was asked for, so its restart policy does not
                // start it again.
                let stopping = |state: AgentState| state == AgentState::Stopping;
                if stopping(agent.state())
                    || matches!(found.handle.status(), Status::Stopping { .. })
                {
                    live.ask_end();
                }
                live.set_attached_handle(found.handle, agent.restarts);
                attached += 1;
            }
            Err(error) => {
                shared.forget(agent.id);
                let left_running = matches!(error, AttachError::Incompatible { .. });
                if !left_running {
                    gone.insert(agent.id.to_string());
                }
                let mut message = error.to_string();
                if left_running {
                    message.push_str("; the agent was left running");
                }
                mark_lost(shared, agent, message)?;
            }
        }
    }
    if !gone.is_empty() {
        let killed = tokio::task::spawn_blocking(move || drover_holder::tree::kill_agents(&gone))
            .await
            .unwrap_or_default();
        if !killed.is_empty() {
            tracing::warn!(
                processes = killed.len(),
                "killed stray processes of lost agents"
            );
        }
    }
    if attached > 0 {
        tracing::info!(agents = attached, "re-attached to running agents");
    }
    release_stale(shared).await;
    Ok(())
}

/// One agent is `lost`: the state and its `lost` event are one transaction.
fn mark_lost(shared: &Shared, mut agent: AgentInfo, error: String) -> Result<(), DaemonError> {
    tracing::warn!(agent = %agent.id, %error, "agent lost across a daemon restart");
    // Nobody saw it end: an AI agent's activity ends failed, asking for a person.
    if let Some(mut activity) = agent.activity.clone().filter(|a| !a.phase.is_final()) {
        activity.phase = drover_proto::Phase::Failed;
        activity.current_tool = None;
        activity.attention.push(drover_proto::Attention {
            reason: drover_proto::AttentionReason::Error,
            detail: "lost: nobody saw it end (its holder is gone)".to_owned(),
        });
        if activity.attention.len() > drover_proto::activity::MAX_ATTENTION {
            activity.attention.remove(0);
        }
        agent.activity = Some(activity.clone());
        let change = Change::Activity(agent.id, Box::new(activity));
        shared.events.commit(change, EventKind::Activity, &agent)?;
    }
    agent.status = AgentStatus::Lost {
        pid: agent.status.pid(),
        started_at: agent.status.started_at(),
        ended_at: drover_proto::now_ns(),
        error: Some(error),
    };
    let change = Change::Status(agent.id, agent.status.clone(), agent.runs());
    shared.events.commit(change, EventKind::Lost, &agent)?;
    shared.store.close_log(agent.id);
    Ok(())
}

/// Holder directories of agents that are not live: release the holder (its agent's end is
/// recorded) or remove what a dead holder left.
async fn release_stale(shared: &Arc<Shared>) {
    let Ok(entries) = std::fs::read_dir(shared.holders.root()) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // The holder of a live agent's current run stays; an agent waiting to restart has
        // none (its ended run's holder goes).
        let current = crate::holders::parse_holder_name(&name).is_some_and(|(id, run)| {
            shared.live(id).is_some_and(|live| {
                let info = live.info.borrow();
                info.state() != AgentState::Restarting && info.restarts.saturating_add(1) == run
            })
        });
        if current {
            continue;
        }
        if !drover_supervisor::release(shared.holders.root(), &name).await {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The supervisor's view of a recorded status (for the handle until the holder says more).
fn supervisor_status(status: &AgentStatus) -> Status {
    match status.clone() {
        AgentStatus::Running { pid, started_at } => Status::Running { pid, started_at },
        AgentStatus::Paused { pid, started_at } => Status::Paused { pid, started_at },
        AgentStatus::Stopping { pid, started_at } => Status::Stopping { pid, started_at },
        _ => Status::Starting,
    }
}
