//! `signal`: any signal, by name or number, to the agent's process group.

use drover_proto::op::{SignalArgs, SignalSpec};
use drover_proto::{ErrorBody, ErrorCode};

use super::{after, live, OpResult};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, args: SignalArgs) -> OpResult {
    let number = match &args.signal {
        SignalSpec::Number(n) => drover_supervisor::signal_name(*n).map(|_| *n),
        SignalSpec::Name(name) => drover_supervisor::parse_signal(name),
    }
    .ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::BadRequest,
            match &args.signal {
                SignalSpec::Number(n) => format!("unknown signal {n}"),
                SignalSpec::Name(name) => format!("unknown signal {name:?}"),
            },
        )
    })?;
    // Job-control stops would stop the group behind the state machine's back: `pause` exists.
    use nix::sys::signal::Signal;
    let job_control = [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU];
    if job_control.iter().any(|s| *s as i32 == number) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "{} stops the agent without telling Drover; use pause",
                drover_supervisor::signal_name(number).unwrap_or("this signal")
            ),
        ));
    }
    let (_, live, handle) = live(shared, &args.agent, "signal").await?;
    // STOP and CONT are pause and resume: state changes, bounded like theirs on a full disk.
    if number == Signal::SIGSTOP as i32 || number == Signal::SIGCONT as i32 {
        shared.events.check_room("signal")?;
    }
    // A signal whose default is to end the process: if the agent dies of it, it was asked to.
    let harmless = [
        Signal::SIGSTOP,
        Signal::SIGCONT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
        Signal::SIGWINCH,
        Signal::SIGCHLD,
        Signal::SIGURG,
    ];
    if !harmless.iter().any(|s| *s as i32 == number) {
        live.ask_end_by_signal(number);
    }
    let status = handle.signal(number).await.map_err(supervisor_error)?;
    Ok(after(&live, &status))
}
