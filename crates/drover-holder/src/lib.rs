//! `drover-holder`: one small process per agent that outlives the daemon.
//!
//! A holder (the conmon / containerd-shim model) is the agent's parent and a child subreaper:
//! it owns the agent's stdin, stdout and stderr, cuts the output into numbered, timestamped
//! records, keeps them in a bounded spool file until the daemon acknowledges them, reaps the
//! agent and keeps its exit status, and applies pause/resume/stop/kill/signal to the agent's
//! process group and every descendant. It talks to the daemon over a unix socket in its own
//! directory under the daemon's state directory ([`wire`], versioned from the first frame), so
//! a daemon that crashed or was upgraded re-attaches and continues every log exactly.
//!
//! No async runtime: one `poll` loop over a handful of descriptors (see [`hold`]), about
//! 140 KiB of private memory per holder.
//!
//! Holders are started by the [`spawner`], a process the daemon starts early so that starting
//! a holder never copies the daemon's large descriptor table. The spawner forks them
//! ([`fork`]): a holder is a copy of the spawner that calls [`hold`] directly.
//!
//! One binary serves every role, chosen by its first argument: `spawner`, or `hold DIR` and
//! `pooled DIR` (holders executed by a spawner that cannot fork) ([`main`]). It is the
//! `drover-holder` executable, or the `drover` executable's hidden `holder` subcommand.

/// `eprintln!` that never panics. A holder's stderr is `holder.log` in the state directory: on
/// a full disk the write fails, and `eprintln!` would then panic and end the holder (and with it
/// the agent) at the moment it should only hold the agent's output back.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod agent;
pub mod fork;
pub mod hold;
pub mod ignored;
pub mod pool;
pub mod spawner;
pub mod split;
pub mod spool;
mod status;
pub mod tree;
pub mod wire;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

pub use status::{unix_nanos, Status};
pub use wire::{AGENT_ENV, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};

/// This build of the holder: its version and a fingerprint of its sources. `drover-holder
/// build` (or `drover holder build`) prints it, so `drover serve` runs a `drover-holder`
/// executable found beside it only when it holds the same holder code as itself.
pub const BUILD: &str = env!("DROVER_HOLDER_BUILD");

/// The holder's listening socket, in its directory.
pub const SOCKET: &str = "sock";
/// The spool file, in its directory.
pub const SPOOL: &str = "spool";
/// The holder's own diagnostics (its stderr), in its directory.
pub const LOG: &str = "holder.log";

/// Why a holder or the spawner stopped.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum HolderError {
    #[error("holder setup failed: {0}")]
    Setup(&'static str, #[source] std::io::Error),
    #[error("spawner channel failed")]
    Wire(#[source] wire::WireError),
    #[error("usage: {0} (spawner | hold DIR | pooled DIR | build)")]
    Usage(String),
    #[error("cannot find my own executable")]
    Exe(#[source] std::io::Error),
}

/// Runs the role named by `args`: `spawner`, `hold DIR`, `pooled DIR`, or `build` (print
/// [`BUILD`]). `prefix` is what comes between the executable and the role in this process's
/// own command line (`["holder"]` for `drover holder ...`), so a spawner that cannot fork
/// executes holders the same way it was started.
pub fn main(prefix: &[OsString], args: &[OsString]) -> ExitCode {
    let result = match args.first().and_then(|a| a.to_str()) {
        Some("spawner") if args.len() == 1 => std::env::current_exe()
            .map_err(HolderError::Exe)
            .and_then(|exe| spawner::run(&exe, prefix)),
        Some("hold") if args.len() == 2 => hold::run(&PathBuf::from(&args[1])),
        Some("pooled") if args.len() == 2 => hold::run_pooled(&PathBuf::from(&args[1])),
        Some("build") if args.len() == 1 => {
            use std::io::Write as _;
            let _ = writeln!(std::io::stdout(), "{BUILD}");
            Ok(())
        }
        _ => Err(HolderError::Usage("drover-holder".to_owned())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("{}", report(&error));
            ExitCode::from(2)
        }
    }
}

/// `drover-holder: <error>` and each of its causes on a line of its own.
pub(crate) fn report(error: &HolderError) -> String {
    let mut message = format!("drover-holder: {error}");
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        message.push_str(&format!("\n  caused by: {c}"));
        cause = c.source();
    }
    message
}
