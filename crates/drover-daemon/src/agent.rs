//! One live agent: its supervisor handle and the observer that turns what the supervisor sees
//! into stored records, registry updates and events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use drover_proto::{AgentId, AgentInfo, AgentStatus, EventKind, Record, Seq, StreamKind};
use drover_supervisor::{CapturedRecord, Handle, Observer, Status, Stream};
use tokio::sync::watch;

use crate::daemon::Shared;

/// A live agent as the daemon holds it.
#[derive(Debug)]
pub(crate) struct LiveAgent {
    /// Set right after the supervisor starts the process.
    pub(crate) handle: OnceLock<Handle>,
    /// The agent as last recorded; every waiter watches it.
    pub(crate) info: watch::Receiver<AgentInfo>,
}

impl LiveAgent {
    /// The handle, waiting briefly for a spawn that registered the agent but has not finished
    /// starting its process (the handle is set right after the supervisor returns).
    pub(crate) async fn handle_when_started(&self) -> Option<Handle> {
        for _ in 0..200 {
            if let Some(handle) = self.handle.get() {
                return Some(handle.clone());
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        None
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
}

impl AgentObserver {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        info: AgentInfo,
    ) -> (Arc<AgentObserver>, watch::Receiver<AgentInfo>) {
        let (watch, receiver) = watch::channel(info.clone());
        let observer = AgentObserver {
            id: info.id,
            shared: Arc::downgrade(shared),
            info: Mutex::new(info),
            watch,
        };
        (Arc::new(observer), receiver)
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
        if let Err(error) = shared.store.append(self.id, &records) {
            tracing::error!(agent = %self.id, %error, "storing records");
        }
        shared.publisher.log(self.id, records);
    }

    fn status(&self, status: &Status) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let status = convert_status(status);
        let terminal = status.state().is_terminal();
        let mut info = self.info.lock().unwrap_or_else(|p| p.into_inner());
        if info.status == status {
            return;
        }
        info.status = status;
        if let Err(error) = shared.store.update_status(self.id, &info.status) {
            tracing::error!(agent = %self.id, %error, "recording status");
        }
        // Registry, then watchers, then the event: whoever hears of the event and asks finds
        // the same state.
        self.watch.send_replace(info.clone());
        let kind = if terminal {
            EventKind::Exit
        } else {
            EventKind::State
        };
        shared.events.emit(kind, &info);
        if terminal {
            shared.store.close_log(self.id);
            shared.forget(self.id);
        }
    }
}
