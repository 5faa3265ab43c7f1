//! Supervision of one child process for Drover.
//!
//! [`spawn`] starts a [`Command`] in its own process group and returns a [`Handle`]. One actor
//! task owns the child; the handle talks to it over a channel and reads its [`Status`] from a
//! `watch`. The crate provides:
//!
//! - **Lifecycle**: pause/resume (SIGSTOP/SIGCONT), stop with grace (SIGTERM, then SIGKILL),
//!   kill and arbitrary signals, always to the whole process group; exit detected by the
//!   child's wait future, never polled; a `max_runtime` that stops the child gracefully.
//! - **Capture**: stdout and stderr are drained concurrently and cut into [`CapturedRecord`]s
//!   (split on `\n`, pieces of at most `max_record` bytes, an unfinished line flushed after
//!   `partial_flush`), byte-exact, numbered by one `seq` shared by both streams, handed to an
//!   [`Observer`] that must never block.
//! - **Stdin**: a bounded queue drained by a writer task; writes never wait on the child.
//! - **Backends** ([`backend`]): argv templates for `claude`, `codex`, ... rendered without a shell.
//!
//! ## Exit and drain
//!
//! When the main process is reaped, the rest of its process group is SIGKILLed (leftover
//! grandchildren die with the agent, like systemd's control-group kill mode). The pipes are then
//! read until EOF or `drain_timeout` (a process that escaped the group with `setsid` may hold
//! them open), unfinished lines are flushed, the last records are delivered, and only then is the
//! terminal status (`Exited`/`Killed`) published, first to the observer, then to the handle.
//! So every record precedes the terminal status, and "exited" always means "reaped".
//!
//! ## Held agents
//!
//! [`spawn_held`] starts the child under a holder process instead (`drover-holder`, started by
//! the [`Launcher`]'s spawner): the holder is its parent and subreaper, owns its pipes, cuts
//! the records and keeps them in a spool until the observer has stored them
//! ([`Observer::kept_through`]), so the child outlives this process and [`attach`] picks it up
//! again, every record once. The handle and the observer calls are the same; a holder that
//! disappears ends the child as [`Status::Lost`] after its stray processes are killed.
//! Dropping the handles of a held child leaves it running under its holder.
//!
//! ## What it does not do
//!
//! It does not store, number across restarts, or fan out records (the daemon and the store do),
//! does not allocate agent ids, does not use a shell or a PTY, and does not restart children.
//! Dropping every [`Handle`] of a child kills its group: a child nobody can control is not kept.

mod actor;
pub mod backend;
mod capture;
mod command;
mod error;
mod handle;
mod launcher;
mod observer;
mod remote;
mod signal;
mod status;
mod stdin;

pub use backend::{ArgTemplate, BackendError, BackendTable, BackendTemplate, RenderInput};
pub use command::{Command, StdinMode, SupervisorConfig};
pub use error::SupervisorError;
pub use handle::{spawn, Handle};
pub use launcher::{set_agent_open_files, HolderProgram, Launcher, READY, READY_MAX};
pub use observer::{CapturedRecord, Observer, Stream};
pub use remote::{attach, holder_dir, release, spawn_held, AttachError, Attached};
pub use signal::{parse_signal, signal_name};
pub use status::Status;
