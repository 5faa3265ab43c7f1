//! The one error type of this crate.

/// Why a control operation on a child was refused. A refused operation changes nothing.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum SupervisorError {
    /// The operation is not valid in the child's current state (pause an exited agent, resume a
    /// running one). `state` is a [`crate::Status::name`].
    #[error("cannot {op} an agent that is {state}")]
    InvalidState {
        op: &'static str,
        state: &'static str,
    },
    /// The stdin queue is full: the child is not reading its stdin fast enough (or at all).
    #[error("stdin queue is full: the agent is not reading its input")]
    StdinFull,
    /// Stdin was never piped, was closed, or the child has exited.
    #[error("stdin is closed, or was never a pipe (an agent takes input only when spawned with stdin \"pipe\": `drover spawn -i`)")]
    StdinClosed,
    /// Not a signal number this platform knows.
    #[error("invalid signal number {0}")]
    InvalidSignal(i32),
    /// `killpg` failed.
    #[error("sending signal {signal} to process group {pgid} failed")]
    Signal {
        signal: i32,
        pgid: u32,
        #[source]
        source: nix::Error,
    },
    /// The actor task is gone without a terminal status (its runtime is shutting down).
    #[error("the supervisor task is gone")]
    ActorGone,
}
