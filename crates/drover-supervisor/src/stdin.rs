//! The child's stdin: a bounded queue of chunks drained by a writer task.
//!
//! Callers never wait on the child: `write_stdin` is a `try_send` into the queue, so a child that
//! never reads its stdin fills the pipe, then the queue, and then callers get `StdinFull`.

use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::SupervisorError;

/// The sending side of the stdin queue, shared by every clone of a handle and by the actor (which
/// empties it at exit). `None` means closed or never piped.
#[derive(Debug, Clone, Default)]
pub(crate) struct StdinSlot(Arc<Mutex<Option<mpsc::Sender<Vec<u8>>>>>);

impl StdinSlot {
    /// Starts the writer task for `pipe` and returns the slot feeding it.
    pub(crate) fn spawn_writer(pipe: ChildStdin, queue: usize) -> (Self, JoinHandle<()>) {
        let (slot, rx) = Self::channel(queue);
        let task = tokio::spawn(run_writer(pipe, rx));
        (slot, task)
    }

    /// A slot and the queue it feeds, for a writer elsewhere (a holder's connection).
    pub(crate) fn channel(queue: usize) -> (Self, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        (StdinSlot(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// Queues `data` without waiting. The lock only guards a `try_send`.
    pub(crate) fn write(&self, data: Vec<u8>) -> Result<usize, SupervisorError> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let tx = guard.as_ref().ok_or(SupervisorError::StdinClosed)?;
        let len = data.len();
        if len == 0 {
            return if tx.is_closed() {
                Err(SupervisorError::StdinClosed)
            } else {
                Ok(0)
            };
        }
        tx.try_send(data).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SupervisorError::StdinFull,
            mpsc::error::TrySendError::Closed(_) => SupervisorError::StdinClosed,
        })?;
        Ok(len)
    }

    /// Drops the sender: the writer writes what is queued, then closes the pipe.
    pub(crate) fn close(&self) -> Result<(), SupervisorError> {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match guard.take() {
            Some(tx) if !tx.is_closed() => Ok(()),
            _ => Err(SupervisorError::StdinClosed),
        }
    }
}

/// Writes queued chunks in order; stops at the first write error (the child closed its stdin or
/// exited) so later `write_stdin` calls see `StdinClosed`.
async fn run_writer(mut pipe: ChildStdin, mut rx: mpsc::Receiver<Vec<u8>>) {
    while let Some(chunk) = rx.recv().await {
        if let Err(e) = pipe.write_all(&chunk).await {
            tracing::debug!(error = %e, "stdin write failed; closing stdin");
            return;
        }
    }
    let _ = pipe.shutdown().await;
}
