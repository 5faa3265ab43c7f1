//! Restart policies: when a run ends and the spec's `restart` says so, the agent waits in
//! `restarting` and its next run starts at `restart_at`, under the same id, its records going on
//! from the next `seq`. A `stop` or `kill` during the wait cancels it (the agent then ends as
//! its last run did); so does a daemon that stops its agents on shutdown. A daemon that leaves
//! them (`on_shutdown = "leave"`) finds a restarting agent in the registry when it starts again
//! and schedules the same restart.

use std::sync::Arc;
use std::time::Duration;

use drover_supervisor::Status;

use crate::agent::{AgentObserver, LiveAgent};
use crate::config::ShutdownPolicy;
use crate::daemon::Shared;

/// Start the agent's next run at `at` (unix nanoseconds), unless it is cancelled first.
pub(crate) fn schedule(shared: &Arc<Shared>, observer: Arc<AgentObserver>, at: i64) {
    let Some(live) = shared.live(observer.id()) else {
        return;
    };
    let (cancel, cancelled) = tokio::sync::oneshot::channel();
    *live.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel);
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let wait = u64::try_from(at.saturating_sub(drover_proto::now_ns())).unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_nanos(wait)) => {}
            _ = cancelled => {
                observer.end_restarting();
                return;
            }
        }
        // Time is up; a `stop` that took the cancel meanwhile wins.
        let mine = live
            .restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if mine.is_none() {
            observer.end_restarting();
            return;
        }
        if shared
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Stopping its agents, the daemon ends this one too; leaving them, the next daemon
            // restarts it.
            if shared.config.on_shutdown == ShutdownPolicy::Stop {
                observer.end_restarting();
            }
            return;
        }
        start_run(&shared, &observer, &live).await;
    });
}

/// Start the agent's next run, rendered from its spec as the first one was.
async fn start_run(shared: &Arc<Shared>, observer: &Arc<AgentObserver>, live: &LiveAgent) {
    let info = live.info.borrow().clone();
    let id = info.id;
    let prepared = crate::handler::spawn::prepare(shared, &info.spec, id);
    let (command, config) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            // The daemon's configuration changed under it (its backend is gone): the agent
            // cannot run again.
            use drover_supervisor::Observer as _;
            observer.status(&Status::FailedToStart {
                error: format!("cannot restart: {}", error.message),
                ended_at: drover_proto::now_ns(),
            });
            return;
        }
    };
    let tracker = crate::handler::spawn::tracker(shared, &info.spec, &command);
    // Requests wait for the new run's handle, never act on the last run's.
    live.clear_handle();
    let run = observer.new_run(tracker);
    let first_seq = match shared.store.log_bounds(id) {
        Ok(bounds) => bounds.next_seq.0,
        Err(error) => {
            use drover_supervisor::Observer as _;
            observer.status(&Status::FailedToStart {
                error: format!("cannot restart: reading the log: {error}"),
                ended_at: drover_proto::now_ns(),
            });
            return;
        }
    };
    let observer: Arc<dyn drover_supervisor::Observer> = Arc::clone(observer) as _;
    let handle = shared
        .holders
        .spawn(id, run, command, config, observer, first_seq)
        .await;
    live.set_handle(handle);
}

/// How long a `stop` or `kill` of an agent whose next run is starting waits for that run.
pub(crate) const STARTING_RUN: Duration = Duration::from_secs(10);
