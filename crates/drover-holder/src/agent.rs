//! The agent process as its holder owns it: start, pipes, signals, stop with grace.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::split::LineSplitter;
use crate::wire::{OpError, StartSpec};
use crate::{tree, unix_nanos, Status};

/// One output pipe and the unfinished line read from it.
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) file: File,
    pub(crate) stream: u8,
    pub(crate) splitter: LineSplitter,
    /// When the buffered unfinished line's first byte arrived.
    pub(crate) pending_since: Option<Instant>,
}

/// The running (or reaped, still draining) agent.
#[derive(Debug)]
pub(crate) struct Agent {
    pub(crate) pid: u32,
    pub(crate) started_at: i64,
    pub(crate) pipes: Vec<Pipe>,
    pub(crate) stdin: Option<File>,
    /// Bytes the daemon sent that the pipe has not taken yet (bounded by the daemon's credit).
    pub(crate) stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    pub(crate) stdin_closing: bool,
    /// When a stop's grace ends (SIGKILL to everything then).
    pub(crate) kill_at: Option<Instant>,
    /// When `max_runtime` stops the agent.
    pub(crate) runtime_at: Option<Instant>,
    /// The signal a stop sends first.
    pub(crate) stop_signal: i32,
    /// The main process was reaped with this status; the pipes are draining.
    pub(crate) reaped: Option<Status>,
    /// The pipes are given up at this time after the reap.
    pub(crate) drain_until: Option<Instant>,
}

fn nonblocking(fd: &impl AsFd) -> std::io::Result<()> {
    let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK;
    fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
    Ok(())
}

fn pipe_of(fd: impl Into<OwnedFd>, stream: u8, max_record: usize) -> std::io::Result<Pipe> {
    let fd: OwnedFd = fd.into();
    nonblocking(&fd)?;
    Ok(Pipe {
        file: File::from(fd),
        stream,
        splitter: LineSplitter::new(max_record),
        pending_since: None,
    })
}

/// Starts the agent in its own process group, or says in one line why it could not (the same
/// words the in-process supervisor uses).
pub(crate) fn start(spec: &StartSpec) -> Result<Agent, String> {
    if spec.program.is_empty() {
        return Err("no program given (empty argv)".to_owned());
    }
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(if spec.stdin_pipe {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &spec.cwd {
        if !std::path::Path::new(cwd).is_dir() {
            return Err(format!(
                "working directory {cwd} does not exist or is not a directory"
            ));
        }
        cmd.current_dir(cwd);
    }
    let mut child = cmd.spawn().map_err(|e| {
        let program = &spec.program;
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
    })?;
    let started_at = unix_nanos();
    let pid = child.id();
    let max_record = usize::try_from(spec.max_record)
        .unwrap_or(usize::MAX)
        .max(1);
    let mut pipes = Vec::with_capacity(2);
    let setup = |e: std::io::Error| format!("setting up the agent's pipes failed: {e}");
    if let Some(out) = child.stdout.take() {
        pipes.push(pipe_of(out, 1, max_record).map_err(setup)?);
    }
    if let Some(err) = child.stderr.take() {
        pipes.push(pipe_of(err, 2, max_record).map_err(setup)?);
    }
    let stdin = match child.stdin.take() {
        Some(pipe) => {
            let fd: OwnedFd = pipe.into();
            nonblocking(&fd).map_err(setup)?;
            Some(File::from(fd))
        }
        None => None,
    };
    // Reaped with waitpid on SIGCHLD (it is one of several children once orphans arrive);
    // dropping std's handle neither waits nor kills.
    drop(child);
    Ok(Agent {
        pid,
        started_at,
        pipes,
        stdin,
        stdin_buf: Vec::new(),
        stdin_closing: false,
        kill_at: None,
        runtime_at: spec
            .max_runtime_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms)),
        reaped: None,
        drain_until: None,
        stop_signal: spec.stop_signal,
    })
}

impl Agent {
    fn signal(&self, signal: i32) -> Result<(), OpError> {
        let sig = Signal::try_from(signal).map_err(|_| OpError::InvalidSignal { signal })?;
        let pgid = i32::try_from(self.pid).map_err(|_| OpError::InvalidSignal { signal })?;
        killpg(Pid::from_raw(pgid), sig).map_err(|e| OpError::Signal {
            signal,
            pgid: self.pid,
            errno: e as i32,
        })
    }

    /// SIGKILL to the group and every descendant (at a stop's deadline, or on `kill`).
    pub(crate) fn kill_everything(&self, me: u32) {
        tree::kill_all(me, Some(self.pid));
    }

    pub(crate) fn running(&self) -> Status {
        Status::Running {
            pid: self.pid,
            started_at: self.started_at,
        }
    }

    /// Applies one operation to the agent in `current` state; a refused one changes nothing.
    pub(crate) fn apply(
        &mut self,
        me: u32,
        op: crate::wire::Op,
        current: &Status,
    ) -> Result<Status, OpError> {
        use crate::wire::Op;
        let invalid = || OpError::InvalidState {
            op: op.name().to_owned(),
            state: current.name().to_owned(),
        };
        if self.reaped.is_some() {
            return Err(invalid());
        }
        let (pid, started_at) = (self.pid, self.started_at);
        match (op, current) {
            (Op::Pause, Status::Running { .. }) => {
                self.signal(Signal::SIGSTOP as i32)?;
                Ok(Status::Paused { pid, started_at })
            }
            (Op::Resume, Status::Paused { .. }) => {
                self.signal(Signal::SIGCONT as i32)?;
                Ok(self.running())
            }
            (Op::Pause | Op::Resume, _) => Err(invalid()),
            (
                Op::Stop { grace_ms },
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => self.stop(Duration::from_millis(grace_ms), current),
            (
                Op::Kill,
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => {
                self.kill_everything(me);
                Ok(current.clone())
            }
            (
                Op::Signal { signal },
                Status::Running { .. } | Status::Paused { .. } | Status::Stopping { .. },
            ) => match (Signal::try_from(signal), current) {
                (Ok(Signal::SIGSTOP), Status::Running { .. }) => self.apply(me, Op::Pause, current),
                (Ok(Signal::SIGCONT), Status::Paused { .. }) => self.apply(me, Op::Resume, current),
                _ => {
                    self.signal(signal)?;
                    Ok(current.clone())
                }
            },
            (Op::Stop { .. } | Op::Kill | Op::Signal { .. }, _) => Err(invalid()),
        }
    }

    /// The stop signal to the group (plus SIGCONT if paused) and arm the SIGKILL; stopping
    /// again can only bring the SIGKILL closer.
    pub(crate) fn stop(&mut self, grace: Duration, current: &Status) -> Result<Status, OpError> {
        let kill_at = Instant::now() + grace;
        if let Status::Stopping { .. } = current {
            self.kill_at = Some(self.kill_at.map_or(kill_at, |k| k.min(kill_at)));
            return Ok(current.clone());
        }
        self.signal(self.stop_signal)?;
        if let Status::Paused { .. } = current {
            self.signal(Signal::SIGCONT as i32)?;
        }
        self.kill_at = Some(kill_at);
        Ok(Status::Stopping {
            pid: self.pid,
            started_at: self.started_at,
        })
    }

    /// The terminal status for the main process's wait status.
    pub(crate) fn ended(&self, status: WaitStatus) -> Status {
        let ended_at = unix_nanos();
        let (code, signal) = match status {
            WaitStatus::Exited(_, code) => (Some(code), None),
            WaitStatus::Signaled(_, signal, _) => (None, Some(signal as i32)),
            _ => (None, None),
        };
        match (code, signal) {
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
        }
    }
}
