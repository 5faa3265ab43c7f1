//! The activity reader: one thread that feeds AI agents' stdout to their parsers, off the
//! capture path. Capture stores and publishes a batch, then hands a copy of its stdout lines
//! here and goes on; the thread parses them in order (one queue for all agents, so each agent's
//! lines stay in order) and records the changes. A full queue makes capture wait: the activity
//! never skips a line, and memory stays bounded. An agent's end waits for the thread to have
//! read everything before it, so the final activity is recorded before the `exit` event. A
//! change the event budget held back is recorded once the budget allows, whether or not the
//! agent prints again (looked at every 100 ms while any is held).

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use drover_proto::AgentStatus;

use crate::agent::AgentObserver;

/// Batches waiting for the reader, all agents together. A capture batch holds at most a read's
/// worth of output (64 KiB from a pipe, up to 1 MiB from a holder's spool), so what waits is
/// at most about 64 MiB.
const QUEUE: usize = 64;

/// One batch's stdout records, copied into one buffer (one allocation per batch, not per line).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    data: Vec<u8>,
    /// Each record's end in `data` and whether it is `partial`.
    ends: Vec<(usize, bool)>,
}

impl Lines {
    /// Room for `records` records of `bytes` bytes in all, allocated once.
    pub(crate) fn with_capacity(bytes: usize, records: usize) -> Lines {
        Lines {
            data: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(records),
        }
    }

    pub(crate) fn push(&mut self, data: &[u8], partial: bool) {
        self.data.extend_from_slice(data);
        self.ends.push((self.data.len(), partial));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Each record's bytes and whether it is partial, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], bool)> {
        let mut start = 0;
        self.ends.iter().map(move |&(end, partial)| {
            let record = &self.data[start..end];
            start = end;
            (record, partial)
        })
    }
}

enum Job {
    /// Stdout records of one agent, in order.
    Feed(Arc<AgentObserver>, Lines),
    /// The agent ended: settle its activity, then say so.
    End(Arc<AgentObserver>, AgentStatus, SyncSender<()>),
}

/// The handle capture uses; the thread ends when the daemon drops it.
#[derive(Debug, Clone)]
pub(crate) struct Readers {
    queue: SyncSender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Feed(..) => f.write_str("Feed"),
            Job::End(..) => f.write_str("End"),
        }
    }
}

impl Readers {
    /// Start the reader thread. It enters the daemon's runtime, so the event bus can start its
    /// retry task from there when the registry refuses a change.
    pub(crate) fn start() -> std::io::Result<Readers> {
        let (queue, jobs) = sync_channel(QUEUE);
        let runtime = tokio::runtime::Handle::try_current().ok();
        std::thread::Builder::new()
            .name("drover-activity".into())
            .spawn(move || {
                let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
                run(&jobs);
            })?;
        Ok(Readers { queue })
    }

    /// Queue stdout lines for `observer`'s parser; waits while the queue is full.
    pub(crate) fn feed(&self, observer: Arc<AgentObserver>, lines: Lines) {
        if let Err(error) = self.queue.send(Job::Feed(observer, lines)) {
            // The thread is gone (the daemon is stopping): read here.
            if let Job::Feed(observer, lines) = error.0 {
                observer.read_and_apply(&lines);
            }
        }
    }

    /// Settle `observer`'s activity once everything queued before is read; returns when done.
    pub(crate) fn end(&self, observer: Arc<AgentObserver>, status: AgentStatus) {
        let (done, finished) = sync_channel(1);
        match self.queue.send(Job::End(observer, status, done)) {
            Ok(()) => {
                let _ = finished.recv();
            }
            Err(error) => {
                if let Job::End(observer, status, _) = error.0 {
                    observer.end_activity(&status);
                }
            }
        }
    }
}

/// How often changes the event budget held back are looked at again, for agents that print
/// nothing more (a long tool call after a burst): the budget earns one event per 50 ms.
const HELD_RETRY: Duration = Duration::from_millis(100);

fn run(jobs: &Receiver<Job>) {
    // Agents with a change held back by their event budget. Weak: an ended agent's observer
    // goes, and is forgotten here at the next look (its end recorded the change anyway).
    let mut holding: Vec<Weak<AgentObserver>> = Vec::new();
    let mut looked = Instant::now();
    loop {
        let job = if holding.is_empty() {
            jobs.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            jobs.recv_timeout(HELD_RETRY.saturating_sub(looked.elapsed()))
        };
        match job {
            Ok(Job::Feed(observer, lines)) => {
                observer.read_and_apply(&lines);
                if observer.is_holding()
                    && !holding.iter().any(|w| w.as_ptr() == Arc::as_ptr(&observer))
                {
                    holding.push(Arc::downgrade(&observer));
                }
            }
            Ok(Job::End(observer, status, done)) => {
                observer.end_activity(&status);
                let _ = done.send(());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if !holding.is_empty() && looked.elapsed() >= HELD_RETRY {
            looked = Instant::now();
            holding.retain(|observer| observer.upgrade().is_some_and(|o| o.flush_held()));
        }
    }
}
