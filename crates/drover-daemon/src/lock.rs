//! The state directory: created 0700 and locked, so two daemons never share one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::DaemonError;

/// An exclusive lock on `<state_dir>/daemon.lock`, held for the daemon's life.
#[derive(Debug)]
pub(crate) struct StateLock {
    _lock: Flock<File>,
}

/// Create the state directory (0700) if needed and take its lock.
pub(crate) fn prepare(state_dir: &Path) -> Result<StateLock, DaemonError> {
    let io = |context: String| move |source| DaemonError::Io { context, source };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io(format!(
            "creating state directory {}",
            state_dir.display()
        )))?;
    // The directory may predate us with looser permissions; the ipc socket inside must not be
    // reachable by other users.
    fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700)).map_err(io(format!(
        "securing state directory {}",
        state_dir.display()
    )))?;
    let path = state_dir.join("daemon.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        DaemonError::Config {
            reason: format!(
                "another drover daemon is using {} ({errno})",
                state_dir.display()
            ),
        }
    })?;
    Ok(StateLock { _lock: lock })
}
