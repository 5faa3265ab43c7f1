//! Signals a process inherited as ignored are not passed on to what it starts.
//!
//! A process started in the background of a non-interactive shell (`drover serve &` in a
//! script, a CI runner) starts with SIGINT and SIGQUIT ignored, and `nohup` ignores SIGHUP. An
//! ignored disposition survives `exec`, so every agent would inherit it: a shell agent cannot
//! even trap a signal it was started with ignored, and an agent whose stop signal is SIGINT
//! (claude's) would never see its stop and be killed at the end of the grace. A *handled*
//! signal is reset to the default on `exec`, so the daemon and the holder spawner install a
//! handler (tokio's, which records and drops the signal) for each such signal they find
//! ignored: for themselves nothing changes (the signal still does nothing to them), and what
//! they start begins with the default. Installing a handler is the safe way to do it here:
//! resetting the disposition in the child between fork and exec needs `unsafe`. (Holders the
//! spawner forks without `exec` reset these signals to the default themselves, `crate::fork`.)
//!
//! It lives in this crate, not the daemon's, so the `drover-holder` executable (whose spawner
//! needs it) does not link the daemon, libzmq and libstdc++: that made every holder start
//! slower and larger. Holders themselves run no runtime; the spawner builds a current-thread
//! one only to install the handlers, which outlive it.

use nix::sys::signal::Signal as Sig;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Signals that are reset when found ignored. SIGPIPE is not among them: Rust programs ignore it
/// themselves and `std::process::Command` resets it for children.
pub(crate) const RESET: [Sig; 7] = [
    Sig::SIGHUP,
    Sig::SIGINT,
    Sig::SIGQUIT,
    Sig::SIGUSR1,
    Sig::SIGUSR2,
    Sig::SIGALRM,
    Sig::SIGTERM,
];

/// The signals this process ignores, from the `SigIgn` mask in `/proc/self/status`.
fn ignored() -> Vec<i32> {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return Vec::new();
    };
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    RESET
        .into_iter()
        .map(|signal| signal as i32)
        .filter(|signal| mask & (1u64 << (signal - 1)) != 0)
        .collect()
}

/// Install a handler for each signal in [`RESET`] this process ignores (inside a tokio
/// runtime); `failed` hears of each that could not be handled (it then stays ignored for what
/// this process starts). The returned streams may be dropped: tokio's handlers stay installed.
pub fn handle_ignored(failed: impl Fn(i32, &std::io::Error)) -> Vec<Signal> {
    ignored()
        .into_iter()
        .filter_map(|raw| match signal(SignalKind::from_raw(raw)) {
            Ok(stream) => Some(stream),
            Err(error) => {
                failed(raw, &error);
                None
            }
        })
        .collect()
}

/// [`handle_ignored`] for a process without a runtime (the holder spawner, from `drover holder
/// spawner` and `drover-holder spawner`): a short-lived one installs the handlers, which
/// outlive it. Nothing is done when nothing is ignored.
pub fn handle_ignored_without_runtime() {
    if ignored().is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
    else {
        return;
    };
    let _guard = runtime.enter();
    drop(handle_ignored(|raw, error| {
        say!("drover-holder: signal {raw} stays ignored for agents: {error}");
    }));
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_ignored_mask() {
        // Rust ignores SIGPIPE in every program; it is not in RESET, so nothing is found on
        // a process started normally, and the mask parses.
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        assert!(status.contains("SigIgn:"));
        assert!(!super::RESET.contains(&super::Sig::SIGPIPE));
    }
}
