//! Restart policies: when a run ends and the spec's `restart` says so, the agent waits in
//! `restarting` and its next run starts at `restart_at`, under the same id, its records going on
//! from the next `seq`. A `stop` or `kill` during the wait cancels it (the agent then ends as
//! its last run did); so does a daemon that stops its agents on shutdown. A daemon that leaves
//! them (`on_shutdown = "leave"`) finds a restarting agent in the registry when it starts again
//! and schedules the same restart.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use drover_supervisor::Status;

use crate::agent::{AgentObserver, LiveAgent};
use crate::config::ShutdownPolicy;
use crate::daemon::Shared;

/// Make the agent's restart cancellable before anyone can see it is restarting: a `stop` or
/// `kill` takes the sender (see [`LiveAgent::cancel_restart`]). The ended run's handle is
/// forgotten, so nothing acts on it any more.
pub(crate) fn arm(live: &LiveAgent) -> tokio::sync::oneshot::Receiver<()> {
    let (cancel, cancelled) = tokio::sync::oneshot::channel();
    *live.restart.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel);
    // Armed first: a re-attach setting the handle concurrently either sees the restart armed
    // or sets the handle before this clears it (`LiveAgent::set_attached_handle`).
    live.clear_handle();
    cancelled
}

/// What the waiting restart does once its time has come.
enum Next {
    /// Start run `n`.
    Start(u32),
    /// A `stop` or `kill` took the restart, or the daemon stops its agents: end the agent.
    End,
    /// The daemon is going and leaves its agents: the next daemon restarts this one.
    Leave,
}

/// Start the agent's next run at `at` (unix nanoseconds), unless `cancelled` fires first.
pub(crate) fn schedule(
    shared: &Arc<Shared>,
    observer: Arc<AgentObserver>,
    at: i64,
    cancelled: tokio::sync::oneshot::Receiver<()>,
) {
    let Some(live) = shared.live(observer.id()) else {
        return;
    };
    // Weak: a daemon that has stopped is not kept alive by a restart a day away.
    let weak = Arc::downgrade(shared);
    tokio::spawn(async move {
        let wait = u64::try_from(at.saturating_sub(drover_proto::now_ns())).unwrap_or(0);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_nanos(wait)) => {}
            cancelled = cancelled => {
                // Sent: cancelled. Dropped unsent: another restart owns the agent now.
                if cancelled.is_ok() {
                    observer.end_restarting();
                }
                return;
            }
        }
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let info = live.info.borrow().clone();
        let prepared = crate::handler::spawn::prepare(&shared, &info.spec, info.id);
        let next = {
            // Under the spawn gate, as a spawn registers: a shutdown either comes first (and
            // this run never starts) or finds this run's start recorded and stops it.
            let _gate = shared.spawn_gate.lock().unwrap_or_else(|p| p.into_inner());
            let mine = live
                .restart
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if mine.is_none() {
                Next::End
            } else if shared.shutting_down.load(Ordering::SeqCst) {
                match shared.config.on_shutdown {
                    ShutdownPolicy::Stop => Next::End,
                    ShutdownPolicy::Leave => Next::Leave,
                }
            } else {
                let tracker = prepared.as_ref().ok().and_then(|(command, _)| {
                    crate::handler::spawn::tracker(&shared, &info.spec, command)
                });
                Next::Start(observer.new_run(tracker))
            }
        };
        match next {
            Next::End => observer.end_restarting(),
            Next::Leave => {}
            Next::Start(run) => start_run(&shared, &observer, &live, run, prepared).await,
        }
    });
}

/// Start run `run` (its `starting` is recorded), rendered from the spec as the first run was.
async fn start_run(
    shared: &Arc<Shared>,
    observer: &Arc<AgentObserver>,
    live: &LiveAgent,
    run: u32,
    prepared: Result<
        (
            drover_supervisor::Command,
            drover_supervisor::SupervisorConfig,
        ),
        drover_proto::ErrorBody,
    >,
) {
    use drover_supervisor::Observer as _;
    let id = observer.id();
    let (command, config) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            // The daemon's configuration changed under it (its backend is gone): the agent
            // cannot run again.
            observer.status(&Status::FailedToStart {
                error: format!("cannot restart: {}", error.message),
                ended_at: drover_proto::now_ns(),
            });
            return;
        }
    };
    let first_seq = match shared.store.log_bounds(id) {
        Ok(bounds) => bounds.next_seq.0,
        Err(error) => {
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
