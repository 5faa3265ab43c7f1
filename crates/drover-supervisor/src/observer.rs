//! Records, the observer that receives them, and the sink that numbers them.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::Status;

/// Which pipe a record was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The wire name: `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One numbered piece of output: a whole line including its `\n`, or (`partial = true`) a piece
/// of a line that was too long or waited too long for its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRecord {
    /// One counter per child, shared by both streams, starting at 1.
    pub seq: u64,
    /// Unix nanoseconds when the bytes were read.
    pub ts: i64,
    pub stream: Stream,
    /// Raw bytes, never decoded: invalid UTF-8 is kept as it came.
    pub data: Vec<u8>,
    pub partial: bool,
}

/// Receives everything a supervised child produces.
pub trait Observer: Send + Sync + 'static {
    /// Called with records in strictly increasing consecutive seq order (1, 2, 3 ...), never
    /// concurrently, never blocked on by anything slow. Must return quickly: it runs on the task
    /// that drains the child's pipe.
    fn records(&self, batch: Vec<CapturedRecord>);
    /// Called on every state transition, in order, including the first Running (or
    /// FailedToStart) and the terminal state. The terminal call happens after the process is
    /// reaped AND after every record has been delivered via records().
    fn status(&self, status: &Status);
    /// The highest seq the observer has kept for good (stored), when it keeps less than it was
    /// given. A holder keeps every record after it in its spool. `None`: everything given.
    fn kept_through(&self) -> Option<u64> {
        None
    }
    /// The run's `max_runtime` stopped it while nobody watched (a holder says so when a daemon
    /// re-attaches); called before any status of the re-attached run.
    fn timed_out(&self) {}
    /// The run is stopping because someone asked (a client's stop the last daemon sent but
    /// never recorded), not by its timeout: a re-attach says so before it reports `stopping`.
    fn end_asked(&self) {}
}

/// Numbers records and hands them to the observer.
///
/// The `std::sync::Mutex` is deliberate (as in mini-redis' `db.rs`): it guards one counter and a
/// synchronous observer call, is never held across `.await`, and holding it *while* calling the
/// observer is what makes "seq order == call order, never concurrent" true for two reader tasks.
/// Status calls take the same lock, so observer calls are fully serialized.
pub(crate) struct Sink {
    /// The next seq, and the last timestamp handed out (so `ts` never decreases as `seq`
    /// grows, even though each reader stamps its read before taking this lock).
    next_seq: Mutex<(u64, i64)>,
    observer: Arc<dyn Observer>,
}

impl Sink {
    pub(crate) fn new(observer: Arc<dyn Observer>) -> Self {
        Sink {
            next_seq: Mutex::new((1, i64::MIN)),
            observer,
        }
    }

    /// Assigns consecutive seqs to `batch` and delivers it as one call.
    pub(crate) fn deliver(&self, mut batch: Vec<CapturedRecord>) {
        if batch.is_empty() {
            return;
        }
        let mut guard = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        let (next, last_ts) = &mut *guard;
        for record in &mut batch {
            record.seq = *next;
            *next += 1;
            record.ts = record.ts.max(*last_ts);
            *last_ts = record.ts;
        }
        self.observer.records(batch);
    }

    /// Delivers records a holder already numbered (consecutive, continuing the last batch).
    pub(crate) fn deliver_numbered(&self, batch: Vec<CapturedRecord>) {
        let Some(last) = batch.last() else {
            return;
        };
        let mut guard = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = last.seq + 1;
        guard.1 = last.ts;
        self.observer.records(batch);
    }

    /// See [`Observer::kept_through`].
    pub(crate) fn kept_through(&self) -> Option<u64> {
        self.observer.kept_through()
    }

    pub(crate) fn status(&self, status: &Status) {
        let _serial = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        self.observer.status(status);
    }
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}
