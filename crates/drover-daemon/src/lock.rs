//! The state directory: created 0700 and locked, so two daemons never share one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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
    // The ipc socket and the logs inside must not be reachable by other users. The directory
    // must be ours and not shared (never /tmp or another world-writable directory); if it is
    // merely readable by others it is tightened. Checked whether or not we just created it:
    // someone may have created it between a check for its existence and ours.
    let meta = fs::metadata(state_dir).map_err(io(format!(
        "reading state directory {}",
        state_dir.display()
    )))?;
    let mode = meta.permissions().mode() & 0o7777;
    let owner = meta.uid();
    let me = nix::unistd::getuid().as_raw();
    // Writable by others (group or world, or sticky like /tmp): they may already have
    // planted files or links in it.
    if owner != me || mode & 0o1022 != 0 {
        return Err(DaemonError::Config {
            reason: format!(
                "state directory {} is shared (mode {mode:04o}, owner uid {owner}); use a \
                 directory of your own, e.g. `mkdir -m 700 DIR`",
                state_dir.display()
            ),
        });
    }
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %state_dir.display(),
            "state directory was mode {mode:04o}; making it private (0700)"
        );
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700)).map_err(io(format!(
            "securing state directory {}",
            state_dir.display()
        )))?;
    }
    let path = state_dir.join("daemon.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
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
