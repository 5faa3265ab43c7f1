//! Signal names and the process-group handle the actor signals through.

use std::str::FromStr;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::SupervisorError;

/// Parses `"TERM"`, `"SIGTERM"`, `"sigterm"` or `"15"` into a signal number. Only the standard
/// signals nix knows are accepted (no real-time signals).
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok().map(|sig| sig as i32);
    }
    let upper = s.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).ok().map(|sig| sig as i32)
}

/// The conventional name of a signal number (`15` -> `"SIGTERM"`).
pub fn signal_name(n: i32) -> Option<&'static str> {
    Signal::try_from(n).ok().map(Signal::as_str)
}

/// The child's process group (pgid = the child's pid, from `process_group(0)`).
///
/// It kills the whole group when dropped before the child was reaped, so a dropped actor (a
/// runtime shutting down) never leaves an agent running unsupervised. After the reap, the actor
/// marks it `reaped` and it never signals again: the pid may then belong to someone else.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: u32,
    reaped: bool,
}

impl ProcessGroup {
    pub(crate) fn new(pgid: u32) -> Self {
        ProcessGroup {
            pgid,
            reaped: false,
        }
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: i32) -> Result<(), SupervisorError> {
        let sig = Signal::try_from(signal).map_err(|_| SupervisorError::InvalidSignal(signal))?;
        if self.reaped {
            // Unreachable by construction (the actor stops taking signal requests at the reap),
            // kept as a hard guard against signalling a recycled pid.
            return Err(SupervisorError::Signal {
                signal,
                pgid: self.pgid,
                source: nix::Error::ESRCH,
            });
        }
        let pgid = i32::try_from(self.pgid).map_err(|_| SupervisorError::Signal {
            signal,
            pgid: self.pgid,
            source: nix::Error::EINVAL,
        })?;
        killpg(Pid::from_raw(pgid), sig).map_err(|source| SupervisorError::Signal {
            signal,
            pgid: self.pgid,
            source,
        })
    }

    /// Called right after the group leader is reaped: SIGKILL what is left of the group (the
    /// leader's pid stays reserved while group members exist, so this cannot hit a stranger),
    /// then never signal again.
    pub(crate) fn reap(&mut self) {
        // ESRCH here just means nothing was left, the common case.
        let _ = self.signal(Signal::SIGKILL as i32);
        self.reaped = true;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.signal(Signal::SIGKILL as i32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_numbers() {
        for s in ["TERM", "SIGTERM", "sigterm", "term", "15", " 15 "] {
            assert_eq!(parse_signal(s), Some(15), "{s}");
        }
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("usr1"), Some(libc::SIGUSR1));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("999"), None);
        assert_eq!(parse_signal(""), None);
    }

    #[test]
    fn names_numbers() {
        assert_eq!(signal_name(15), Some("SIGTERM"));
        assert_eq!(signal_name(9), Some("SIGKILL"));
        assert_eq!(signal_name(999), None);
    }
}
