//! `spawn` and the `Handle` every other part of the daemon uses to reach a child.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::{Actor, Op, Request};
use crate::capture::run_reader;
use crate::observer::{Observer, Sink, Stream};
use crate::signal::ProcessGroup;
use crate::status::unix_nanos;
use crate::stdin::StdinSlot;
use crate::{Command, Status, StdinMode, SupervisorConfig, SupervisorError};

/// Requests a handle may queue before `pause`/`stop`/... wait for room.
pub(crate) const REQUEST_QUEUE: usize = 16;

/// Starts `command` under supervision. Never fails: a spawn failure becomes
/// [`Status::FailedToStart`] with a message naming the missing program or directory.
///
/// Must be called inside a Tokio runtime (it spawns the actor, reader and writer tasks).
/// Dropping every clone of the returned handle kills the child's process group.
pub fn spawn(command: Command, config: SupervisorConfig, observer: Arc<dyn Observer>) -> Handle {
    let sink = Arc::new(Sink::new(observer));
    let mut child = match start(&command) {
        Ok(child) => child,
        Err(error) => return Handle::failed(&sink, error),
    };
    let Some(pid) = child.id() else {
        return Handle::failed(&sink, "child exited before its pid was known".to_owned());
    };
    let started_at = unix_nanos();
    let running = Status::Running { pid, started_at };
    sink.status(&running);
    let (status_tx, status_rx) = watch::channel(running);

    let (stop_readers, stop_rx) = watch::channel(false);
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(tokio::spawn(run_reader(
            out,
            Stream::Stdout,
            sink.clone(),
            config.max_record,
            config.partial_flush,
            stop_rx.clone(),
        )));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(tokio::spawn(run_reader(
            err,
            Stream::Stderr,
            sink.clone(),
            config.max_record,
            config.partial_flush,
            stop_rx,
        )));
    }
    let (stdin, stdin_writer) = match child.stdin.take() {
        Some(pipe) => {
            let (slot, task) = StdinSlot::spawn_writer(pipe, config.stdin_queue);
            (slot, Some(task))
        }
        None => (StdinSlot::default(), None),
    };

    let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let actor = Actor {
        group: ProcessGroup::new(pid),
        pid,
        started_at,
        config,
        sink,
        status: status_tx,
        stdin: stdin.clone(),
        stdin_writer,
        readers,
        stop_readers,
        kill_at: None,
    };
    tokio::spawn(actor.run(child, requests_rx));
    Handle {
        inner: Arc::new(Inner {
            requests: requests_tx,
            status: status_rx,
            stdin,
        }),
    }
}

/// Spawns the process, or explains in one line why it could not be.
fn start(command: &Command) -> Result<Child, String> {
    if command.program.is_empty() {
        return Err("no program given (empty argv)".to_owned());
    }
    let mut cmd = tokio::process::Command::new(&command.program);
    cmd.args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(match command.stdin {
            StdinMode::Null => Stdio::null(),
            StdinMode::Pipe => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &command.cwd {
        // Checked first: exec reports a missing cwd as ENOENT, indistinguishable from a missing
        // program.
        if !cwd.is_dir() {
            return Err(format!(
                "working directory {} does not exist or is not a directory",
                cwd.display()
            ));
        }
        cmd.current_dir(cwd);
    }
    cmd.spawn().map_err(|e| {
        let program = &command.program;
        match e.kind() {
            std::io::ErrorKind::NotFound if program.contains('/') => {
                format!("program {program} does not exist")
            }
            std::io::ErrorKind::NotFound => format!("program {program} not found on PATH"),
            std::io::ErrorKind::PermissionDenied => {
                format!("program {program} is not executable (permission denied)")
            }
            _ => format!("cannot start program {program}: {e}"),
        }
    })
}

/// A cheap, cloneable reference to one supervised child.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

struct Inner {
    requests: mpsc::Sender<Request>,
    status: watch::Receiver<Status>,
    stdin: StdinSlot,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("status", &*self.inner.status.borrow())
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// A handle over an actor's channels (the in-process actor or a holder's connection).
    pub(crate) fn from_parts(
        requests: mpsc::Sender<Request>,
        status: watch::Receiver<Status>,
        stdin: StdinSlot,
    ) -> Handle {
        Handle {
            inner: Arc::new(Inner {
                requests,
                status,
                stdin,
            }),
        }
    }

    /// A handle for a child that never started: every operation is refused.
    pub(crate) fn failed(sink: &Sink, error: String) -> Handle {
        let status = Status::FailedToStart {
            error,
            ended_at: unix_nanos(),
        };
        sink.status(&status);
        let (_, status) = watch::channel(status);
        let (requests, _) = mpsc::channel(1);
        Handle {
            inner: Arc::new(Inner {
                requests,
                status,
                stdin: StdinSlot::default(),
            }),
        }
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status change (it may skip intermediate ones; the observer
    /// sees all of them).
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.inner.status.clone()
    }

    /// SIGSTOP to the group. Only from `Running`.
    pub async fn pause(&self) -> Result<Status, SupervisorError> {
        self.request(Op::Pause).await
    }

    /// SIGCONT to the group. Only from `Paused`.
    pub async fn resume(&self) -> Result<Status, SupervisorError> {
        self.request(Op::Resume).await
    }

    /// SIGTERM to the group (and SIGCONT if paused), then SIGKILL when `grace` ends. Returns once
    /// the child is `Stopping`; use [`Handle::wait`] for the exit. On a `Stopping` child it can
    /// only shorten the remaining grace.
    pub async fn stop(&self, grace: Duration) -> Result<Status, SupervisorError> {
        self.request(Op::Stop(grace)).await
    }

    /// SIGKILL to the group. The status changes when the child is reaped.
    pub async fn kill(&self) -> Result<Status, SupervisorError> {
        self.request(Op::Kill).await
    }

    /// Any signal to the group. SIGSTOP/SIGCONT act as pause/resume so the state stays true.
    pub async fn signal(&self, signal: i32) -> Result<Status, SupervisorError> {
        if nix::sys::signal::Signal::try_from(signal).is_err() {
            return Err(SupervisorError::InvalidSignal(signal));
        }
        self.request(Op::Signal(signal)).await
    }

    /// Lets go of a held child: the connection to its holder closes, the child keeps running
    /// under it (for the next daemon to re-attach), and this handle sees no more changes. An
    /// in-process child is not affected.
    pub async fn detach(&self) {
        let _ = self.request(Op::Detach).await;
    }

    /// Queues `data` for the child's stdin without waiting. `StdinFull` when the queue is full,
    /// `StdinClosed` when stdin is not piped, closed, or the child exited.
    pub fn write_stdin(&self, data: Vec<u8>) -> Result<usize, SupervisorError> {
        self.inner.stdin.write(data)
    }

    /// Closes stdin once the chunks already queued are written. Returns at once (it never waits
    /// on a child that does not read).
    pub async fn close_stdin(&self) -> Result<(), SupervisorError> {
        self.inner.stdin.close()
    }

    /// Resolves with the terminal status: after the reap and after every record was delivered.
    pub async fn wait(&self) -> Status {
        let mut rx = self.inner.status.clone();
        let result = rx.wait_for(Status::is_terminal).await.map(|s| s.clone());
        result.unwrap_or_else(|_| rx.borrow().clone())
    }

    async fn request(&self, op: Op) -> Result<Status, SupervisorError> {
        let (reply, answer) = oneshot::channel();
        if self
            .inner
            .requests
            .send(Request { op, reply })
            .await
            .is_ok()
        {
            if let Ok(result) = answer.await {
                return result;
            }
        }
        // The actor is gone: it published a terminal status first, unless its runtime died.
        let status = self.status();
        if status.is_terminal() {
            Err(SupervisorError::InvalidState {
                op: op.name(),
                state: status.name(),
            })
        } else {
            Err(SupervisorError::ActorGone)
        }
    }
}
