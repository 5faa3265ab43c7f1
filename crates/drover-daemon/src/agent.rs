//! One live agent: its supervisor handle and the observer that turns what the supervisor sees
//! into stored records, registry updates and events.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};

use drover_agent::{Ending, Tracker, Update};
use drover_proto::{
    Activity, AgentId, AgentInfo, AgentStatus, EventKind, Record, Seq, SeqRange, StreamKind,
};
use drover_store::{Change, StoreError};
use drover_supervisor::{CapturedRecord, Handle, Observer, Status, Stream};
use tokio::sync::watch;

use crate::backlog::Backlog;
use crate::daemon::Shared;

/// A live agent as the daemon holds it.
#[derive(Debug)]
pub(crate) struct LiveAgent {
    /// The current run's handle, set right after the supervisor starts its process
    /// (`set_handle`); replaced when the restart policy starts the next run.
    handle: Mutex<Option<Handle>>,
    handle_set: tokio::sync::Notify,
    /// While a restart waits for its time: sending cancels it (the agent then ends as its last
    /// run did). Taken by whoever acts first, the waiting restart or a `stop`/`kill`.
    pub(crate) restart: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The agent as last recorded; lookups of a live agent read it.
    pub(crate) info: watch::Receiver<AgentInfo>,
    /// Turns true once the agent's end is fully recorded (registry, exit event, log closed,
    /// live slot freed); `wait` watches it.
    pub(crate) ended: watch::Receiver<bool>,
    /// A client asked for the agent's end (`stop`, `kill`, a signal): shared with its
    /// observer, so an end by signal is told from a crash, a stop from a timeout, and neither
    /// restarts the agent.
    end_asked: Arc<EndAsked>,
}

/// What clients asked of the current run's end.
#[derive(Debug, Default)]
pub(crate) struct EndAsked {
    /// `stop` or `kill` (or a stop recorded before a daemon restart).
    ended: AtomicBool,
    /// The last signal sent whose default is to end a process (0: none). It asked for the end
    /// only if the run dies of it, or exits with 128 + its number as shells and most programs
    /// that handle it do: a run that survives it (a trapped USR1 or HUP) and fails later failed.
    signal: AtomicI32,
}

impl EndAsked {
    /// Whether a run that ended with `status` ended as a client asked.
    pub(crate) fn asked(&self, status: &AgentStatus) -> bool {
        if self.ended.load(Ordering::SeqCst) {
            return true;
        }
        let signal = self.signal.load(Ordering::SeqCst);
        signal != 0
            && (status.signal() == Some(signal)
                || status.exit_code() == Some(128_i32.saturating_add(signal)))
    }

    /// A stop or kill was asked (it need not have ended the run yet).
    fn stopping(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    fn clear(&self) {
        self.ended.store(false, Ordering::SeqCst);
        self.signal.store(0, Ordering::SeqCst);
    }
}

impl LiveAgent {
    /// A client is about to end the agent (`stop`, `kill`): its end is what they asked for.
    pub(crate) fn ask_end(&self) {
        self.end_asked.ended.store(true, Ordering::SeqCst);
    }

    /// A client is about to send a signal whose default ends a process: the run's end is
    /// what they asked for if it dies of it (see [`EndAsked`]).
    pub(crate) fn ask_end_by_signal(&self, signal: i32) {
        self.end_asked.signal.store(signal, Ordering::SeqCst);
    }

    /// The handle, if the process was started.
    pub(crate) fn handle(&self) -> Option<Handle> {
        self.handle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Record the handle once the supervisor has started the process, and wake whoever waits.
    pub(crate) fn set_handle(&self, handle: Handle) {
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        self.handle_set.notify_waiters();
    }

    /// Set the handle of run `restarts + 1` found by re-attaching, unless the agent moved on
    /// meanwhile: the end its holder replayed armed the restart policy (which forgot the
    /// handle: a `stop` must then cancel the restart, not act on the ended run), or the next
    /// run started. Under the handle's lock, which [`crate::restarting::arm`] takes after
    /// arming, so one of the two always sees the other.
    pub(crate) fn set_attached_handle(&self, handle: Handle, restarts: u32) {
        let mut slot = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        let armed = self
            .restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some();
        let info = self.info.borrow();
        if armed
            || info.restarts != restarts
            || info.state() == drover_proto::AgentState::Restarting
        {
            return;
        }
        drop(info);
        *slot = Some(handle);
        drop(slot);
        self.handle_set.notify_waiters();
    }

    /// Forget the last run's handle while the next run starts.
    pub(crate) fn clear_handle(&self) {
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Cancel a restart that waits for its time; false when none waits (it already started
    /// the next run, or there was none). Whoever takes the sender decides: the waiting task
    /// finds it gone and ends the agent as its last run did.
    pub(crate) fn cancel_restart(&self) -> bool {
        let waiting = self
            .restart
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        waiting.map(|cancel| cancel.send(())).is_some()
    }

    /// The handle; for an agent registered by a spawn that is still starting its process, once
    /// the supervisor returns it (moments later).
    pub(crate) async fn handle_when_started(&self) -> Option<Handle> {
        let set = self.handle_set.notified();
        tokio::pin!(set);
        // Registered before looking, so a `set_handle` in between still wakes us.
        set.as_mut().enable();
        if let Some(handle) = self.handle() {
            return Some(handle);
        }
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), set).await;
        self.handle()
    }
}

/// Receives records and status changes from one agent's supervisor.
pub(crate) struct AgentObserver {
    id: AgentId,
    shared: Weak<Shared>,
    // Guards the registry copy of the agent so status changes apply in order; never held
    // across an await (the supervisor calls us synchronously).
    info: Mutex<AgentInfo>,
    watch: watch::Sender<AgentInfo>,
    ended: watch::Sender<bool>,
    // Records the store refused, waiting for a retry. A std Mutex held across the synchronous
    // append only, never across an await.
    backlog: Arc<Mutex<Waiting>>,
    // The backend's parser, reading stdout into the agent's activity; `None` for backends
    // without one. Used by the activity reader thread (`reading.rs`) only.
    reader: Option<Mutex<Reader>>,
    // This observer, for handing it to the reader thread.
    me: Weak<AgentObserver>,
    // Shared with the live agent: what a client asked of the end. Cleared for each new run.
    end_asked: Arc<EndAsked>,
    // The current run is stopping and nobody asked: its `timeout_ms` stops it.
    timing_out: AtomicBool,
    // The next status of a run the restart policy started is announced as `restarted`.
    announce_restart: AtomicBool,
    // Runs in a row that ended sooner than the restart policy's `reset_after_ms`.
    pub(crate) quick_runs: AtomicU32,
}

/// An agent's parser and the activity last recorded in the registry.
#[derive(Debug)]
struct Reader {
    tracker: Tracker,
    recorded: Option<Activity>,
    /// `activity` events this agent may still record now (a token bucket).
    budget: f64,
    refilled: std::time::Instant,
    /// A change was held back by the budget: the reading is recorded when the budget allows
    /// (with the next output) or when the agent ends, unless a newer change goes out first.
    held: bool,
}

/// `activity` events an agent may record in a burst, and per second after it. A real agent
/// changes phase a few times per tool call, far below this; an agent that floods its output
/// with tool calls has its changes coalesced (the latest wins) instead of filling the registry
/// and the event history, which keeps the newest 100 000 events of all agents.
const ACTIVITY_BURST: f64 = 32.0;
const ACTIVITY_PER_SECOND: f64 = 20.0;

impl Reader {
    fn new(tracker: Tracker, recorded: Option<Activity>) -> Reader {
        Reader {
            tracker,
            recorded,
            budget: ACTIVITY_BURST,
            refilled: std::time::Instant::now(),
            held: false,
        }
    }

    /// Events the budget allows now.
    fn available(&mut self) -> usize {
        let now = std::time::Instant::now();
        let earned = now.duration_since(self.refilled).as_secs_f64() * ACTIVITY_PER_SECOND;
        self.budget = (self.budget + earned).min(ACTIVITY_BURST);
        self.refilled = now;
        self.budget as usize
    }

    /// Take one event from the budget.
    fn spend(&mut self) {
        self.budget = (self.budget - 1.0).max(0.0);
    }
}

/// The backlog and what the observer did about it.
#[derive(Debug, Default)]
struct Waiting {
    backlog: Backlog,
    /// A retry task is running.
    retrying: bool,
    /// The daemon paused the agent because the backlog is full.
    paused: bool,
    /// When the last store failure was logged (they are logged at most every 10 s).
    warned: Option<std::time::Instant>,
}

/// Bytes of refused records one agent keeps before it is paused until the store recovers.
const MAX_BACKLOG: usize = 16 * 1024 * 1024;
/// Bytes of refused records all agents together keep before each is paused as it adds more.
const MAX_TOTAL_BACKLOG: u64 = 256 * 1024 * 1024;
/// First retry of a refused backlog; the wait doubles up to `RETRY_AT_MOST`.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
const RETRY_AT_MOST: std::time::Duration = std::time::Duration::from_secs(5);

impl AgentObserver {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        mut info: AgentInfo,
        tracker: Option<Tracker>,
    ) -> (Arc<AgentObserver>, LiveAgent) {
        // Re-attached: the reading just rebuilt is newer than the registry's last `activity`
        // event, which `ls` and `show` would otherwise show until the agent prints again.
        if let (Some(tracker), Some(_)) = (&tracker, &info.activity) {
            info.activity = Some(tracker.activity().clone());
        }
        let reader = tracker.map(|tracker| Mutex::new(Reader::new(tracker, info.activity.clone())));
        let (watch, receiver) = watch::channel(info.clone());
        let (ended, ended_receiver) = watch::channel(false);
        let end_asked = Arc::new(EndAsked::default());
        let observer = Arc::new_cyclic(|me| AgentObserver {
            me: me.clone(),
            end_asked: Arc::clone(&end_asked),
            timing_out: AtomicBool::new(false),
            announce_restart: AtomicBool::new(false),
            quick_runs: AtomicU32::new(0),
            id: info.id,
            shared: Arc::downgrade(shared),
            info: Mutex::new(info),
            watch,
            ended,
            backlog: Arc::default(),
            reader,
        });
        let live = LiveAgent {
            handle: Mutex::new(None),
            handle_set: tokio::sync::Notify::new(),
            restart: Mutex::new(None),
            info: receiver,
            ended: ended_receiver,
            end_asked,
        };
        (observer, live)
    }
}

impl std::fmt::Debug for AgentObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentObserver")
            .field("id", &self.id)
            .finish()
    }
}

fn convert_record(record: CapturedRecord) -> Record {
    Record {
        seq: Seq(record.seq),
        ts: record.ts,
        stream: match record.stream {
            Stream::Stdout => StreamKind::Stdout,
            Stream::Stderr => StreamKind::Stderr,
        },
        data: record.data,
        partial: record.partial,
    }
}

/// The wire status for a supervisor status, keeping what the registry already knew.
pub(crate) fn convert_status(status: &Status) -> AgentStatus {
    match status.clone() {
        Status::Starting => AgentStatus::Starting,
        Status::Running { pid, started_at } => AgentStatus::Running { pid, started_at },
        Status::Paused { pid, started_at } => AgentStatus::Paused { pid, started_at },
        Status::Stopping { pid, started_at } => AgentStatus::Stopping { pid, started_at },
        Status::Exited {
            code,
            started_at,
            ended_at,
        } => AgentStatus::Exited {
            code,
            started_at,
            ended_at,
        },
        Status::Killed {
            signal,
            started_at,
            ended_at,
        } => AgentStatus::Killed {
            signal,
            started_at,
            ended_at,
        },
        Status::FailedToStart { error, ended_at } => AgentStatus::FailedToStart { error, ended_at },
        Status::Lost {
            pid,
            started_at,
            ended_at,
            error,
        } => AgentStatus::Lost {
            pid,
            started_at,
            ended_at,
            error: Some(error),
        },
    }
}

/// Keep the daemon-wide backlog total in step with one agent's change.
fn account(shared: &Shared, before: usize, after: usize) {
    let counter = &shared.counters.backlog_bytes;
    if after > before {
        counter.fetch_add((after - before) as u64, Ordering::Relaxed);
    } else {
        counter.fetch_sub((before - after) as u64, Ordering::Relaxed);
    }
}

fn lock(waiting: &Mutex<Waiting>) -> std::sync::MutexGuard<'_, Waiting> {
    waiting.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentObserver {
    /// The store refused records: keep retrying, and pause the agent while too much waits.
    /// `error` is the store's answer, or `None` when the records queued behind earlier ones.
    fn on_refused(&self, shared: &Arc<Shared>, waiting: &mut Waiting, error: Option<&StoreError>) {
        let now = std::time::Instant::now();
        let due = waiting
            .warned
            .is_none_or(|at| now.duration_since(at).as_secs() >= 10);
        if let Some(error) = error.filter(|_| due) {
            waiting.warned = Some(now);
            tracing::error!(
                agent = %self.id,
                error = %with_causes(error),
                waiting_bytes = waiting.backlog.bytes(),
                "the store refused records; keeping them to retry"
            );
        }
        if !waiting.retrying {
            waiting.retrying = true;
            tokio::spawn(retry(
                self.id,
                Arc::downgrade(shared),
                Arc::clone(&self.backlog),
            ));
        }
        // The agent's real state decides: someone may have resumed it meanwhile (its `Running`
        // status clears `paused`). Once per episode: between asking for the pause and the
        // agent's `Paused` status, batches keep arriving, and each must not pause (and warn)
        // again.
        let running = self.watch.borrow().state() == drover_proto::AgentState::Running;
        let total = shared.counters.backlog_bytes.load(Ordering::Relaxed);
        let over = waiting.backlog.bytes() > MAX_BACKLOG || total > MAX_TOTAL_BACKLOG;
        if over && running && !waiting.paused {
            waiting.paused = true;
            tracing::warn!(agent = %self.id, "pausing the agent until the store takes its output");
            with_handle(shared, self.id, |handle| async move {
                let _ = handle.pause().await;
            });
        }
    }
}

/// An error and each of its causes, `: `-separated (the store's errors keep the OS error as
/// their source).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Run `action` on the agent's handle in a task of its own (observers must not wait).
fn with_handle<F, Fut>(shared: &Shared, id: AgentId, action: F)
where
    F: FnOnce(Handle) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if let Some(handle) = shared.live(id).and_then(|live| live.handle()) {
        tokio::spawn(action(handle));
    }
}

/// Retry a refused backlog until the store takes it (or the agent is gone), then resume the
/// agent if the backlog had paused it.
async fn retry(id: AgentId, shared: Weak<Shared>, backlog: Arc<Mutex<Waiting>>) {
    let mut wait = RETRY_FIRST;
    loop {
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(RETRY_AT_MOST);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut waiting = lock(&backlog);
        let before = waiting.backlog.bytes();
        let flushed = waiting.backlog.retry(|r| shared.store.append(id, r));
        account(&shared, before, waiting.backlog.bytes());
        if let Err(error) = &flushed {
            // Still refused: said again at most every 10 s, with the cause (it may have changed
            // since the first refusal, which alone was logged before).
            let now = std::time::Instant::now();
            if waiting
                .warned
                .is_none_or(|at| now.duration_since(at).as_secs() >= 10)
            {
                waiting.warned = Some(now);
                tracing::error!(
                    agent = %id,
                    error = %with_causes(error),
                    waiting_bytes = waiting.backlog.bytes(),
                    "the store still refuses records; retrying"
                );
            }
        }
        if flushed.is_ok() {
            waiting.retrying = false;
            if std::mem::take(&mut waiting.paused) {
                tracing::info!(agent = %id, "the store recovered; resuming the agent");
                with_handle(&shared, id, |handle| async move {
                    let _ = handle.resume().await;
                });
            }
            return;
        }
    }
}

fn lock_reader(reader: &Mutex<Reader>) -> std::sync::MutexGuard<'_, Reader> {
    reader.lock().unwrap_or_else(|p| p.into_inner())
}

impl AgentObserver {
    /// Read stdout lines into the activity and show it: every lookup sees the new reading at
    /// once; each change of phase, attention or result is also recorded in the registry with
    /// an `activity` event (at most `ACTIVITY_BURST` at once and `ACTIVITY_PER_SECOND` after).
    /// Called by the activity reader thread.
    pub(crate) fn read_and_apply(&self, lines: &crate::reading::Lines) {
        let (Some(reader), Some(shared)) = (&self.reader, self.shared.upgrade()) else {
            return;
        };
        // Lock order: the agent, then its reader.
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let mut reader = lock_reader(reader);
        // Snapshots only for the events the budget allows now; later changes are coalesced.
        let mut update = Update::capped(reader.available());
        for (data, partial) in lines.iter() {
            reader.tracker.feed(data, partial, &mut update);
        }
        if !update.changed {
            return;
        }
        let newer = !update.events.is_empty() || update.coalesced > 0;
        if newer {
            // A newer change replaces one held back.
            reader.held = false;
        } else if reader.held && reader.available() > 0 {
            // Nothing new: a change held back earlier goes out once the budget allows, as the
            // reading is now (its tokens and text are newer than when it was held).
            reader.held = false;
            update.events.push(reader.tracker.activity().clone());
        }
        for snapshot in update.events {
            reader.spend();
            reader.recorded = Some(snapshot.clone());
            self.record_activity(&shared, &mut info, snapshot);
        }
        if update.coalesced > 0 {
            reader.held = true;
        }
        let activity = reader.tracker.activity().clone();
        info.activity = Some(activity.clone());
        // Only the reading changed: the rest of what lookups see (the spec, up to a 1 MiB task)
        // is not copied again at every batch of output.
        self.watch
            .send_modify(|shown| shown.activity = Some(activity));
    }

    /// Whether a change is held back by the event budget. Called by the reader thread.
    pub(crate) fn is_holding(&self) -> bool {
        self.reader
            .as_ref()
            .is_some_and(|reader| lock_reader(reader).held)
    }

    /// Record a change the budget held back, as the reading is now, once the budget allows;
    /// true while it is still held. Called by the reader thread, for agents that print nothing
    /// more after a burst (the next output would record it too).
    pub(crate) fn flush_held(&self) -> bool {
        let (Some(reader), Some(shared)) = (&self.reader, self.shared.upgrade()) else {
            return false;
        };
        // Lock order: the agent, then its reader.
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let mut reader = lock_reader(reader);
        if !reader.held {
            return false;
        }
        if reader.available() == 0 {
            return true;
        }
        reader.held = false;
        reader.spend();
        let snapshot = reader.tracker.activity().clone();
        reader.recorded = Some(snapshot.clone());
        self.record_activity(&shared, &mut info, snapshot);
        false
    }

    fn record_activity(&self, shared: &Shared, info: &mut AgentInfo, activity: Activity) {
        info.activity = Some(activity.clone());
        // Whoever hears of the event and asks finds what it announced.
        self.watch.send_replace(info.clone());
        shared.events.record(
            Change::Activity(self.id, Box::new(activity)),
            EventKind::Activity,
            info,
            None,
        );
    }

    /// The process ended: the parser's last reading, recorded (with an event) unless the
    /// registry already holds it. Called by the activity reader thread once it has read every
    /// line before the end.
    pub(crate) fn end_activity(&self, status: &AgentStatus) {
        let (Some(reader), Some(shared)) = (&self.reader, self.shared.upgrade()) else {
            return;
        };
        let shared = &*shared;
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let info = &mut *info;
        let mut reader = lock_reader(reader);
        // Stopping before the end: someone asked for it (`stop`, a timeout, the daemon's
        // shutdown), and only claude says so in its output.
        let stopped =
            matches!(info.status, AgentStatus::Stopping { .. }) || self.end_asked.asked(status);
        let ending = match status {
            _ if stopped => Ending::Stopped,
            AgentStatus::Exited { code, .. } => Ending::Exited(*code),
            AgentStatus::Killed { signal, .. } => Ending::Killed(*signal),
            _ => Ending::Failed,
        };
        let update = reader.tracker.end(ending);
        // The end is always recorded, whatever the budget says; it replaces a held change.
        reader.held = false;
        for snapshot in update.events {
            reader.recorded = Some(snapshot.clone());
            self.record_activity(shared, info, snapshot);
        }
        let last = reader.tracker.activity().clone();
        if reader.recorded.as_ref() != Some(&last) {
            reader.recorded = Some(last.clone());
            self.record_activity(shared, info, last);
        }
    }
}

impl Observer for AgentObserver {
    fn records(&self, batch: Vec<CapturedRecord>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let records: Vec<Record> = batch.into_iter().map(convert_record).collect();
        let bytes: usize = records.iter().map(|r| r.data.len()).sum();
        shared
            .counters
            .records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        shared
            .counters
            .bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
        let mut waiting = lock(&self.backlog);
        let before = waiting.backlog.bytes();
        let stored = waiting
            .backlog
            .store(&records, |r| shared.store.append(self.id, r));
        account(&shared, before, waiting.backlog.bytes());
        if let Err(error) = stored {
            self.on_refused(&shared, &mut waiting, error.as_ref());
        }
        drop(waiting);
        // The parser reads a copy, on its own thread, after the batch is published: it adds
        // no latency to followers.
        let lines = self.reader.as_ref().map(|_| {
            let stdout = || records.iter().filter(|r| r.stream == StreamKind::Stdout);
            let mut lines = crate::reading::Lines::with_capacity(
                stdout().map(|r| r.data.len()).sum(),
                stdout().count(),
            );
            for record in stdout() {
                lines.push(&record.data, record.partial);
            }
            lines
        });
        shared.publisher.log(self.id, records);
        if let (Some(lines), Some(me)) = (lines, self.me.upgrade()) {
            if !lines.is_empty() {
                shared.readers.feed(me, lines);
            }
        }
    }

    fn kept_through(&self) -> Option<u64> {
        // What the store holds; records waiting in the backlog stay in the holder's spool too,
        // so a daemon that dies with a backlog loses nothing. When it cannot be told (the
        // daemon is being torn down, the log cannot be read), nothing: `None` would let the
        // holder forget every record delivered, stored or not.
        let Some(shared) = self.shared.upgrade() else {
            return Some(0);
        };
        let kept = shared
            .store
            .log_bounds(self.id)
            .map_or(0, |bounds| bounds.next_seq.0);
        Some(kept.saturating_sub(1))
    }

    fn timed_out(&self) {
        self.timing_out.store(true, Ordering::SeqCst);
    }

    fn end_asked(&self) {
        self.end_asked.ended.store(true, Ordering::SeqCst);
    }

    fn status(&self, status: &Status) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let status = convert_status(status);
        if status.state() == drover_proto::AgentState::Stopping
            && !self.end_asked.stopping()
            && !shared.shutting_down.load(Ordering::SeqCst)
        {
            // Nobody asked and the daemon is not shutting down: the run's `timeout_ms`.
            self.timing_out.store(true, Ordering::SeqCst);
        }
        let run_ended = status.state().is_terminal();
        if run_ended && self.watch.borrow().state() == drover_proto::AgentState::Restarting {
            // This run's end is recorded already (a repeated terminal status).
            return;
        }
        if run_ended && self.reader.is_some() {
            // The activity's last word comes before the exit (whoever sees the exit finds it),
            // once the reader has read every line; not under this agent's lock, which the
            // reader takes.
            if let Some(me) = self.me.upgrade() {
                shared.readers.end(me, status.clone());
            }
        }
        if status.state() == drover_proto::AgentState::Running {
            // Resumed (by anyone): a later recovery of the store must not resume the agent
            // again if someone pauses it meanwhile.
            lock(&self.backlog).paused = false;
        }
        let mut dropped = None;
        if run_ended {
            // Every record came before this call; whatever the store still refuses is lost,
            // and said so where clients look: a `log_dropped` event, the range in reads and
            // follows of the log, and the `records_dropped` counter.
            let mut waiting = lock(&self.backlog);
            let before = waiting.backlog.bytes();
            let flushed = waiting.backlog.retry(|r| shared.store.append(self.id, r));
            if let Err(error) = flushed {
                if let Some((first, last)) = waiting.backlog.abandon() {
                    let range = SeqRange {
                        from: Seq(first),
                        to: Seq(last),
                    };
                    shared
                        .counters
                        .records_dropped
                        .fetch_add(range.len(), Ordering::Relaxed);
                    tracing::error!(
                        agent = %self.id,
                        %error,
                        "records {first}..={last} could not be stored and are lost"
                    );
                    dropped = Some(range);
                }
            }
            account(&shared, before, 0);
        }
        // Records lost at this end make it the agent's end: the log cannot go on past a gap.
        let restart = if run_ended && dropped.is_none() {
            self.restart_delay(&shared, &status)
        } else {
            None
        };
        let timed_out = run_ended && self.timing_out.load(Ordering::SeqCst);
        let status = match restart {
            Some(delay) => restarting(&status, delay),
            None => status,
        };
        // A stop or kill from the moment the state says `restarting` finds the restart to
        // cancel, and never the ended run's handle.
        let cancelled = restart.and_then(|_| {
            shared
                .live(self.id)
                .map(|live| crate::restarting::arm(&live))
        });
        let terminal = status.state().is_terminal();
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        if info.status == status {
            return;
        }
        info.status = status;
        info.timed_out |= timed_out;
        // Order matters: whoever hears of the event and asks must find the new state (lookups
        // of a live agent read the watch, so it changes before the event), and a `wait` returns
        // only once the end is fully recorded: exit event out (or waiting for a full registry,
        // which every read already shows), log closed, live slot freed.
        self.watch.send_replace(info.clone());
        if let Some(range) = dropped {
            shared.events.record(
                Change::LogDropped(self.id, range),
                EventKind::LogDropped,
                &info,
                Some(range),
            );
        }
        let change = Change::Status(self.id, info.status.clone(), info.runs());
        if !terminal {
            // The first status of a run the restart policy started (past `starting`) says so.
            let announce = info.state() != drover_proto::AgentState::Starting
                && self.announce_restart.swap(false, Ordering::SeqCst);
            let kind = if announce {
                EventKind::Restarted
            } else {
                EventKind::State
            };
            shared.events.record(change, kind, &info, None);
            if let (Some(at), Some(cancelled)) = (info.status.restart_at(), cancelled) {
                drop(info);
                if let Some(me) = self.me.upgrade() {
                    crate::restarting::schedule(&shared, me, at, cancelled);
                }
            }
            return;
        }
        self.announce_restart.store(false, Ordering::SeqCst);
        self.finish(&shared, &info, change);
    }
}

/// The status of an agent whose run ended with `ended` and restarts after `delay`.
fn restarting(ended: &AgentStatus, delay: std::time::Duration) -> AgentStatus {
    let now = drover_proto::now_ns();
    let ended_at = ended.ended_at().unwrap_or(now);
    AgentStatus::Restarting {
        code: ended.exit_code(),
        signal: ended.signal(),
        started_at: ended.started_at().unwrap_or(ended_at),
        ended_at,
        restart_at: now.saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX)),
    }
}

impl AgentObserver {
    /// The agent's end is recorded with `change`: its terminal event, its log closed, its live
    /// slot freed, and whoever waits for it woken.
    fn finish(&self, shared: &Shared, info: &AgentInfo, change: Change) {
        let kind = if info.state() == drover_proto::AgentState::Lost {
            EventKind::Lost
        } else {
            EventKind::Exit
        };
        shared.events.record(change, kind, info, None);
        shared.store.close_log(self.id);
        shared.forget(self.id);
        shared.agent_ended.notify_one();
        self.ended.send_replace(true);
    }

    /// How long to wait before the next run, when the restart policy restarts the agent after
    /// its run ended with `status`; `None` when this end is the agent's end.
    fn restart_delay(&self, shared: &Shared, status: &AgentStatus) -> Option<std::time::Duration> {
        let (policy, restarts) = {
            let info = self.watch.borrow();
            (info.spec.restart.clone()?, info.restarts)
        };
        // Asked for (a stop, a kill, a signal), a timeout, or the daemon going away.
        if self.end_asked.asked(status)
            || self.timing_out.load(Ordering::SeqCst)
            || shared.shutting_down.load(Ordering::SeqCst)
        {
            return None;
        }
        let failed = match status {
            AgentStatus::Exited { code, .. } => *code != 0,
            AgentStatus::Killed { .. } => true,
            // Not started (the spec cannot run) or lost: nothing a restart mends.
            _ => return None,
        };
        let wanted = match policy.policy {
            drover_proto::RestartPolicy::Never => false,
            drover_proto::RestartPolicy::OnFailure => failed,
            drover_proto::RestartPolicy::Always => true,
        };
        if !wanted || policy.max_restarts.is_some_and(|most| restarts >= most) {
            return None;
        }
        let lasted_ns = status
            .ended_at()
            .zip(status.started_at())
            .map_or(0, |(end, start)| end.saturating_sub(start));
        let stable =
            lasted_ns / 1_000_000 >= i64::try_from(policy.reset_after_ms).unwrap_or(i64::MAX);
        let quick = if stable {
            self.quick_runs.store(1, Ordering::SeqCst);
            1
        } else {
            self.quick_runs.fetch_add(1, Ordering::SeqCst) + 1
        };
        Some(std::time::Duration::from_millis(policy.delay_ms(quick)))
    }

    /// The agent's id.
    pub(crate) fn id(&self) -> AgentId {
        self.id
    }

    /// The restart policy starts the next run: count it, forget what the last run's client
    /// asked, and read the new run's output afresh.
    /// Its `starting` (with the new restart count) is recorded before the run's holder starts:
    /// a daemon that dies in between finds a `starting` agent whose holder is `<id>.<run>`, and
    /// reports it `lost` if that holder never started it, instead of starting the run twice.
    pub(crate) fn new_run(&self, tracker: Option<Tracker>) -> u32 {
        self.end_asked.clear();
        self.timing_out.store(false, Ordering::SeqCst);
        self.announce_restart.store(true, Ordering::SeqCst);
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        info.restarts = info.restarts.saturating_add(1);
        info.status = AgentStatus::Starting;
        if let (Some(reader), Some(mut tracker)) = (&self.reader, tracker) {
            let mut reader = lock_reader(reader);
            // The run that ended joins the earlier ones: a restart starts a new reading, not a
            // new bill.
            if let Some(ended) = &info.activity {
                tracker.set_earlier_runs(ended.earlier_runs.and(ended));
            }
            info.activity = Some(tracker.activity().clone());
            *reader = Reader::new(tracker, reader.recorded.clone());
        }
        self.watch.send_replace(info.clone());
        if let Some(shared) = self.shared.upgrade() {
            let change = Change::Status(self.id, info.status.clone(), info.runs());
            shared.events.record(change, EventKind::State, &info, None);
        }
        info.restarts + 1
    }

    /// A restart that waited was cancelled (`stop`, `kill`, the daemon stopping its agents):
    /// the agent ends as its last run did.
    pub(crate) fn end_restarting(&self) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        let AgentStatus::Restarting {
            code,
            signal,
            started_at,
            ended_at,
            ..
        } = info.status
        else {
            return;
        };
        info.status = match (code, signal) {
            (_, Some(signal)) => AgentStatus::Killed {
                signal,
                started_at,
                ended_at,
            },
            (code, None) => AgentStatus::Exited {
                code: code.unwrap_or(0),
                started_at,
                ended_at,
            },
        };
        self.watch.send_replace(info.clone());
        let change = Change::Status(self.id, info.status.clone(), info.runs());
        self.finish(&shared, &info, change);
    }
}
