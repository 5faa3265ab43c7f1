//! The actor: one task per child that owns it, applies control requests, and reports exit.
//!
//! Nothing else touches the child. Handles send [`Request`]s over a channel and read the status
//! from a `watch`; the actor is the only writer of both the status and the process group, so
//! "never signal after reap" is a property of this one loop.

use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::observer::Sink;
use crate::signal::ProcessGroup;
use crate::status::unix_nanos;
use crate::stdin::StdinSlot;
use crate::{Status, SupervisorConfig, SupervisorError};

/// A control operation sent by a handle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Pause,
    Resume,
    Stop(Duration),
    Kill,
    Signal(i32),
    /// Let go of a held child (its holder keeps it); nothing for an in-process one.
    Detach,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop(_) => "stop",
            Op::Kill => "kill",
            Op::Signal(_) => "signal",
            Op::Detach => "detach",
        }
    }
}

/// An operation and where to send its answer (the status after it was applied).
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) op: Op,
    pub(crate) reply: oneshot::Sender<Result<Status, SupervisorError>>,
}

/// Everything the actor owns besides the child itself.
#[derive(Debug)]
pub(crate) struct Actor {
    pub(crate) group: ProcessGroup,
    pub(crate) pid: u32,
    pub(crate) started_at: i64,
    pub(crate) config: SupervisorConfig,
    pub(crate) sink: Arc<Sink>,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) stdin: StdinSlot,
    pub(crate) stdin_writer: Option<JoinHandle<()>>,
    pub(crate) readers: Vec<JoinHandle<()>>,
    pub(crate) stop_readers: watch::Sender<bool>,
    /// When a stop's grace ends (SIGKILL then).
    pub(crate) kill_at: Option<Instant>,
}

impl Actor {
    /// Runs until the child is reaped and every record delivered, then publishes the terminal
    /// status and returns (dropping the request channel, so late requests get `InvalidState`).
    pub(crate) async fn run(mut self, mut child: Child, mut requests: mpsc::Receiver<Request>) {
        let mut runtime_at = self.config.max_runtime.map(|d| Instant::now() + d);
        let mut handles_open = true;
        let exit = {
            let mut wait = std::pin::pin!(child.wait());
            loop {
                let kill_at = self.kill_at;
                tokio::select! {
                    exit = &mut wait => break exit,
                    req = requests.recv(), if handles_open => match req {
                        Some(req) => {
                            let result = self.apply(req.op);
                            let _ = req.reply.send(result);
                        }
                        None => {
                            // Every handle is gone: nobody can stop this child any more.
                            handles_open = false;
                            let _ = self.group.signal(Signal::SIGKILL as i32);
                        }
                    },
                    _ = sleep_until(kill_at.unwrap_or_else(Instant::now)), if kill_at.is_some() => {
                        self.kill_at = None;
                        let _ = self.group.signal(Signal::SIGKILL as i32);
                    }
                    _ = sleep_until(runtime_at.unwrap_or_else(Instant::now)), if runtime_at.is_some() => {
                        runtime_at = None;
                        if matches!(*self.status.borrow(), Status::Running { .. } | Status::Paused { .. }) {
                            let _ = self.stop(self.config.runtime_grace);
                        }
                    }
                }
            }
        };
        // Reaped. Kill what is left of the group, close stdin, then drain.
        self.group.reap();
        let ended_at = unix_nanos();
        let terminal = match exit {
            Ok(st) => match (st.code(), st.signal()) {
                (Some(code), _) => Status::Exited {
                    code,
                    started_at: self.started_at,
                    ended_at,
                },
                (None, Some(signal)) => Status::Killed {
                    signal,
                    started_at: self.started_at,
                    ended_at,
                },
                (None, None) => Status::Exited {
                    code: -1,
                    started_at: self.started_at,
                    ended_at,
                },
            },
            Err(e) => {
                tracing::error!(pid = self.pid, error = %e, "waiting for child failed");
                Status::Exited {
                    code: -1,
                    started_at: self.started_at,
                    ended_at,
                }
            }
        };
        let _ = self.stdin.close();
        if let Some(writer) = self.stdin_writer.take() {
            writer.abort();
        }
        self.drain(&mut requests, terminal.name()).await;
        self.set_status(terminal);
    }

    /// Waits for both readers to reach EOF, at most `drain_timeout`; then tells them to stop
    /// (they flush their unfinished line) and waits for that. Requests arriving meanwhile are
    /// refused with the state the child is about to report: its process is already gone.
    async fn drain(&mut self, requests: &mut mpsc::Receiver<Request>, terminal: &'static str) {
        let mut readers = std::mem::take(&mut self.readers);
        let mut all_done = std::pin::pin!(async {
            for reader in &mut readers {
                let _ = reader.await;
            }
        });
        let deadline = sleep_until(Instant::now() + self.config.drain_timeout);
        let mut deadline = std::pin::pin!(deadline);
        let mut timed_out = false;
        loop {
            tokio::select! {
                _ = &mut all_done => return,
                _ = &mut deadline, if !timed_out => {
                    timed_out = true;
                    tracing::debug!(pid = self.pid, "output still open after exit; stopped reading");
                    let _ = self.stop_readers.send(true);
                }
                Some(req) = requests.recv() => {
                    let _ = req.reply.send(Err(SupervisorError::InvalidState { op: req.op.name(), state: terminal }));
                }
            }
        }
    }

    /// Applies one request. A refused request changes nothing.
    fn apply(&mut self, op: Op) -> Result<Status, SupervisorError> {
        let current = self.status.borrow().clone();
        let invalid = || SupervisorError::InvalidState {
            op: op.name(),
            state: current.name(),
        };
        match (op, &current) {
            (Op::Pause, Status::Running { .. }) => {
                self.group.signal(Signal::SIGSTOP as i32)?;
                Ok(self.set_status(Status::Paused {
                    pid: self.pid,
                    started_at: self.started_at,
                }))
            }
            (Op::Resume, Status::Paused { .. }) => {
                self.group.signal(Signal::SIGCONT as i32)?;
                Ok(self.set_status(Status::Running {
                    pid: self.pid,
                    started_at: self.started_at,
                }))
            }
            (Op::Pause | Op::Resume, _) => Err(invalid()),
            (
                Op::Stop(grace),
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => self.stop(grace),
            (
                Op::Kill,
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => {
                self.group.signal(Signal::SIGKILL as i32)?;
                Ok(current)
            }
            (
                Op::Signal(sig),
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => {
                // Keep the state truthful when the signal is itself a pause or resume.
                match (Signal::try_from(sig), &current) {
                    (Ok(Signal::SIGSTOP), Status::Running { .. }) => self.apply(Op::Pause),
                    (Ok(Signal::SIGCONT), Status::Paused { .. }) => self.apply(Op::Resume),
                    _ => {
                        self.group.signal(sig)?;
                        Ok(current)
                    }
                }
            }
            (Op::Stop(_) | Op::Kill | Op::Signal(_), _) => Err(invalid()),
            (Op::Detach, _) => Ok(current),
        }
    }

    /// The stop signal (SIGTERM unless configured) to the group (plus SIGCONT if paused, so a
    /// stopped group can act on it) and arm the SIGKILL. Stopping again can only bring the SIGKILL closer, never push it back.
    fn stop(&mut self, grace: Duration) -> Result<Status, SupervisorError> {
        let current = self.status.borrow().clone();
        let kill_at = Instant::now() + grace;
        if let Status::Stopping { .. } = current {
            self.kill_at = Some(self.kill_at.map_or(kill_at, |k| k.min(kill_at)));
            return Ok(current);
        }
        self.group.signal(self.config.stop_signal)?;
        if let Status::Paused { .. } = current {
            self.group.signal(Signal::SIGCONT as i32)?;
        }
        self.kill_at = Some(kill_at);
        Ok(self.set_status(Status::Stopping {
            pid: self.pid,
            started_at: self.started_at,
        }))
    }

    /// Observer first, then the watch: whoever wakes on the watch can rely on the observer
    /// having seen the transition (and, for a terminal state, every record).
    fn set_status(&self, status: Status) -> Status {
        self.sink.status(&status);
        self.status.send_replace(status.clone());
        status
    }
}
